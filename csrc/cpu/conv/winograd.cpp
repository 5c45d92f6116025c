// Winograd F(m x m, 3x3) (Lavin & Gray), m = 2 or 4: for each m x m output tile,
//   Y = A^T [ sum over c of (G g_kc G^T) .* (B^T d_c B) ] A
// with d_c the alpha x alpha input patch of channel c (alpha = m + 2). The alpha^2 elementwise
// products summed over channels are alpha^2 GEMMs: M_xi (K x tiles) = U_xi (K x C) @ V_xi (C x tiles),
// or, where the weights outnumber the tiles, M_xi^T = V_xi^T U_xi^T on U transformed straight into the
// GEMM's packed panels (see forward_with_tile).
//
//   U = G g G^T    (weights, once per call or packed once for inference)
//   V = B^T d B    (input, per block of images)
//   Y = A^T M A    (output, + bias)
// The matrices are in winograd_kernels.cpp. F(2x2, 3x3) does 16 multiplies per tile and channel
// where direct convolution does 36 (2.25x fewer), F(4x4, 3x3) 36 where it does 144 (4x fewer) and
// moves 2.25 transformed values per output pixel instead of 4, at the price of a larger rounding
// error (its transforms multiply by up to 8 and 5; see docs/ARCHITECTURE.md). The forward pass takes
// whichever costs less, its multiplies and its transformed weights counted (winograd_tile); the
// backward passes keep F(2x2, 3x3).
//
// Blocks of whole images (enough tiles for wide GEMMs, V and M bounded by kMaxBlockBytes per
// thread) are spread over threads with single-threaded GEMMs, like the im2col path in conv.cpp.
// The transforms (winograd_kernels.cpp, compiled once per ISA) run along a row of tiles so the
// compiler vectorizes them across tiles; each entry point dispatches to the active ISA's once.
#include "cpu/conv/winograd.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "core/scratch.h"
#include "core/threading.h"
#include "cpu/conv/winograd_kernels.h"
#include "cpu/gemm/gemm.h"

namespace deepkern::cpu {
namespace {

constexpr int64_t kMaxBlockBytes = int64_t(16) << 20;  // V + M of one block
constexpr int64_t kTargetTiles = 512;                  // GEMM columns per block
constexpr int64_t kMinTiles = 128;                     // tiles of a call, below which im2col + GEMM wins
constexpr int64_t kCachedWeightPairs = 128 * 128;      // ... unless the 16 K x C planes stay in L2
constexpr int64_t kMaxPairsPerTile = 2048;             // ... or there are at most this many K x C pairs per tile

template <class T>
const WinogradKernels<T>& dispatched_kernels() {
  return dispatch(IsaFamily::conv_winograd,
                  IsaTables{generic::winograd_kernels, avx2::winograd_kernels, avx512::winograd_kernels})
      .of<T>();
}

constexpr int kPackedTile = 4;        // the variant weights packed without an input shape are in (width 1)
constexpr int64_t kWeightReuse = 32;  // tiles a transformed weight must meet to repay its trip through memory

int64_t points(int tile) { return (tile + 2) * (tile + 2); }  // alpha^2: GEMMs (xi planes) per call

// Output tiles of F(tile x tile) per image, counting the partial ones at the edges.
int64_t image_tiles(const Conv2dShape& s, int tile) {
  return ((s.out_h + tile - 1) / tile) * ((s.out_w + tile - 1) / tile);
}

// True when the weights' K x C pairs outnumber the values of `tiles` tiles (C + K per point).
bool weights_outnumber(const Conv2dShape& s, int64_t tiles) {
  return s.out_channels * s.in_channels > (s.in_channels + s.out_channels) * tiles;
}

template <class T>
WinogradTiling make_tiling(const Conv2dShape& s, int tile) {
  WinogradTiling t;
  t.tile = tile;
  t.tiles_h = (s.out_h + tile - 1) / tile;
  t.tiles_w = (s.out_w + tile - 1) / tile;
  t.per_image = t.tiles_h * t.tiles_w;
  t.slots = num_threads();
  const int64_t per_slot = (s.batch + t.slots - 1) / t.slots;
  const int64_t image_bytes = points(tile) * (s.in_channels + s.out_channels) * t.per_image * int64_t(sizeof(T));
  int64_t images = std::min(per_slot, (kTargetTiles + t.per_image - 1) / t.per_image);
  images = std::max<int64_t>(1, std::min(images, kMaxBlockBytes / std::max<int64_t>(image_bytes, 1)));
  const int64_t blocks_per_slot = (per_slot + images - 1) / images;
  t.images = std::max<int64_t>(1, (per_slot + blocks_per_slot - 1) / blocks_per_slot);
  // A batch whose weights outnumber its tiles' values (256 channels at 14 x 14, batch 4) is one block
  // computed by all threads: blocks spread over the threads would each stream all the transformed
  // weights (9.4 MB there), which one thread's share of the memory bandwidth already limits.
  if (weights_outnumber(s, s.batch * t.per_image) && image_bytes * s.batch <= kMaxBlockBytes)
    t.images = std::max<int64_t>(1, s.batch);
  return t;
}

// Per-thread scratch: tiles of x (V, 0), of the output or dY (M, 1), transform rows (2), and the
// transformed weights (3), kept for the next call (no page faults).
struct WinogradScratch;
template <class T>
T* thread_buffer(int which, int64_t count) {
  return thread_scratch<WinogradScratch, 4, T>(which, count);
}

// The transforms' scratch of a tiling (winograd_kernels.h).
template <class T>
T* rows_buffer(const WinogradTiling& t) {
  return thread_buffer<T>(2, (t.tile + 2) * t.tile * (t.tiles_h + 1) * t.tiles_w + 2 * t.tile * (t.tiles_w + 1) +
                                 t.tile * t.tile * t.per_image);
}

// Multiplies F(tile x tile, 3x3) saves against direct convolution, counting the partial tiles at
// the edges: F(2x2) 2.25x for even outputs, 1.72x for 7 x 7; F(4x4) 4x for multiples of 4, 3.06x
// for 7 x 7 and 14 x 14.
double winograd_saving(const Conv2dShape& s, int tile) {
  const double tiles = double(image_tiles(s, tile));
  return 9.0 * double(s.out_h) * double(s.out_w) / (double(points(tile)) * std::max(tiles, 1.0));
}

std::atomic<int> last_forward_tile{0};

int64_t tiles_2x2(const Conv2dShape& s) { return s.batch * image_tiles(s, 2); }

// True when the call has kMinTiles F(2x2) tiles, or its 16 K x C weight planes stay in L2.
bool many_tiles(const Conv2dShape& s) {
  return tiles_2x2(s) >= kMinTiles || (tiles_2x2(s) > 0 && s.in_channels * s.out_channels <= kCachedWeightPairs);
}

// True when the call has at most `pairs` weight pairs (k, c) per F(2x2) tile.
bool pairs_per_tile_within(const Conv2dShape& s, int64_t pairs) {
  return tiles_2x2(s) > 0 && s.in_channels * s.out_channels <= pairs * tiles_2x2(s);
}

// Elements of one xi plane of transformed weights in panels of `width` output channels (WinogradKernels).
int64_t weights_plane(int64_t out_channels, int64_t in_channels, int width) {
  return (out_channels + width - 1) / width * width * in_channels;
}

// The scale of the kernels' finiteness probes for operands of sums of `terms` products (input channels,
// or tiles for the weight gradient): the transforms grow such a sum by at most 36100 terms (F(4x4, 3x3):
// B^T . B by 10 x 10, G . G^T by 1, A^T . A by 19 x 19; F(2x2, 3x3) less), so an operand is taken while
// each of its values is at most sqrt(max / (36100 terms)) in magnitude (about 1e16 in float32 at 64
// channels): the probes multiply by max over that bound, which overflows for a larger value. Such a
// call is computed another way (im2col + GEMM: direct sums, as PyTorch's), where float32 inputs near
// 1e37 had given NaN for finite results.
template <class T>
T probe_scale(int64_t terms) {
  return std::sqrt(std::numeric_limits<T>::max()) * std::sqrt(T(36100) * T(std::max<int64_t>(terms, 1)));
}

// Transforms w into u (xi planes of weights_plane elements) on the threads. In panels (width > 1) part p
// of `threads` takes the panels [Q p / threads, Q (p + 1) / threads) of the Q = ceil(K / width), as a
// block's threads split them (forward_with_tile).
template <class T>
bool transform_weights(int tile, int64_t out_channels, int64_t in_channels, int width, const T* w, T* u) {
  const WinogradKernels<T>& kern = dispatched_kernels<T>();
  const int64_t plane = weights_plane(out_channels, in_channels, width);
  const int slots = plane < 4096 ? 1 : num_threads();
  const int64_t unit = width == 1 ? 1 : int64_t(width) * in_channels, units = plane / unit;
  std::atomic<bool> finite{true};
  run_on_threads(slots, [&](int part) {
    if (!kern.transform_weights(tile, w, out_channels, in_channels, width, units * part / slots * unit,
                                units * (part + 1) / slots * unit, probe_scale<T>(in_channels), u))
      finite = false;
  });
  return finite;
}

// Whether blocks of this tiling multiply weights that outnumber their tiles' values (see forward_with_tile).
bool weights_dominate(const Conv2dShape& s, const WinogradTiling& t) {
  return weights_outnumber(s, t.images * t.per_image);
}

// winograd_forward with F(tile x tile, 3x3); `transformed` (may be null) holds w transformed in `layout`.
template <class T>
bool forward_with_tile(const Conv2dShape& s, int tile, const T* x, const T* w, const T* bias, T* y,
                       const T* transformed, WinogradWeightsLayout layout) {
  const int64_t K = s.out_channels, C = s.in_channels, xis = points(tile);
  const WinogradKernels<T>& kern = dispatched_kernels<T>();
  const WinogradTiling t = make_tiling<T>(s, tile);
  // Weights that outnumber a block's tile values (few tiles: batch 1, small images) are in the GEMMs'
  // packed B panels of each U_xi^T, and the GEMMs compute M_xi^T = V_xi^T U_xi^T: packing U_xi as A
  // instead, a transposing copy of all 16 or 36 planes per block, took as long as the GEMMs at batch
  // 1. Other blocks pack the (small) U_xi as A and read V_xi's rows in place. Weights transformed
  // beforehand in this layout are read as they are; else w is transformed here.
  const int width = weights_dominate(s, t) ? packed_b_width<T>() : 1;  // winograd_forward_layout's
  const int64_t plane = weights_plane(K, C, width);
  const T* u = layout.tile == tile && layout.width == width ? transformed : nullptr;
  if (!u) {
    T* fresh = thread_buffer<T>(3, xis * plane);
    if (!transform_weights(tile, K, C, width, w, fresh)) return false;
    u = fresh;
  }
  std::atomic<bool> finite{true};  // cleared once an input block is found to hold Inf or NaN
  const int64_t blocks = (s.batch + t.images - 1) / t.images;
  // Each block runs on `team` threads (a batch with fewer blocks than threads), or on the calling
  // thread alone (blocks spread over the threads).
  auto run_block = [&](int64_t n0, int team) {
    if (!finite) return;
    const int64_t n1 = std::min(s.batch, n0 + t.images), tiles = (n1 - n0) * t.per_image;
    const int64_t in_plane = s.in_h * s.in_w;
    // V and M keep a channel's xi planes together (written and read together by the transforms).
    T* m = thread_buffer<T>(1, xis * K * tiles);
    const WinogradLayout by_channel{xis * tiles, tiles};
    const int64_t panels = (K + width - 1) / width;
    const auto channels_of = [&](int part, int parts) {  // the output channels of part `part`'s panels
      return std::pair{panels * part / parts * width, std::min(K, panels * (part + 1) / parts * width)};
    };
    const auto multiply = [&](int64_t k0, int64_t k1, const T* v) {  // rows k0 .. k1 of each M_xi
      for (int64_t xi = 0; xi < xis && k1 > k0; ++xi)                // M_xi^T = V_xi^T U_xi^T
        gemm_prepacked<T>(tiles, T(1), {v + xi * tiles, 1, xis * tiles},
                          packed_b_layout<T>(C, k1 - k0, u + xi * plane + k0 * C), T(0),
                          {m + xi * tiles + k0 * xis * tiles, 1, xis * tiles}, {}, 1);
    };
    // The threads transform the input channels into one V. Weights in panels (they outnumber the
    // block's tile values): each thread multiplies V by its share of the panels (those transform_weights
    // gave it to transform, so the weights are read back by the thread that wrote them) and transforms
    // those output channels, so only V crosses threads. (Measured at 2 threads: every thread
    // transforming the whole input itself, so that nothing crossed threads, took 10-11% longer at batch
    // 1, 128 channels at 28 x 28 and 256 at 14 x 14; the output channels split apart from the panels,
    // each thread reading M the other wrote, 2-3% longer at batch 2-8; weights read by the thread that
    // did not transform them, up to twice as long in windows of contended memory.) Else the xi planes,
    // then the output channels, split among the threads.
    T* v = thread_buffer<T>(0, xis * C * tiles);
    auto split = [&](int64_t count, auto phase) {
      run_on_threads(team, [&](int part) { phase(count * part / team, count * (part + 1) / team); });
    };
    // Each thread first checks its channels of the block for values the transforms cannot take (the
    // calling thread checking the whole block alone, before the split: 64 channels at 56 x 56, batch
    // 1, 2 threads, 2-4% slower; 1-3% at 28 x 28 and 14 x 14).
    split(C, [&](int64_t c0, int64_t c1) {
      for (int64_t n = n0; n < n1 && finite; ++n)
        if (!kern.all_finite(x + (n * C + c0) * in_plane, (c1 - c0) * in_plane, probe_scale<T>(C))) finite = false;
      if (finite) kern.transform_input(s, t, x, n0, n1, c0, c1, v, by_channel, rows_buffer<T>(t));
    });
    if (!finite) return;
    if (width > 1) {
      run_on_threads(team, [&](int part) {
        const auto [k0, k1] = channels_of(part, team);
        multiply(k0, k1, v);
        if (k1 > k0) kern.transform_output(s, t, m, by_channel, bias, n0, n1, k0, k1, y, rows_buffer<T>(t));
      });
      return;
    }
    split(xis, [&](int64_t xi0, int64_t xi1) {
      for (int64_t xi = xi0; xi < xi1; ++xi)
        gemm<T>(K, tiles, C, T(1), {u + xi * K * C, C, 1}, {v + xi * tiles, xis * tiles, 1}, T(0),
                {m + xi * tiles, xis * tiles, 1}, {}, 1);
    });
    split(K, [&](int64_t k0, int64_t k1) {
      kern.transform_output(s, t, m, by_channel, bias, n0, n1, k0, k1, y, rows_buffer<T>(t));
    });
  };
  if (t.slots > 1 && blocks >= t.slots) {
    run_on_threads(t.slots, [&](int slot) {
      for (int64_t b = slot; b < blocks; b += t.slots) run_block(b * t.images, 1);
    });
  } else {
    for (int64_t b = 0; b < blocks; ++b) run_block(b * t.images, t.slots);
  }
  return finite;
}

}  // namespace

bool winograd_geometry(const Conv2dShape& s) {
  return s.kernel_h == 3 && s.kernel_w == 3 && s.stride_h == 1 && s.stride_w == 1 && s.dilation_h == 1 &&
         s.dilation_w == 1 && s.groups == 1 && s.pad_h <= 2 && s.pad_w <= 2;
}

bool winograd_channels(const Conv2dShape& s) { return s.in_channels >= 64 && s.out_channels >= 64; }

// The variant of the lower cost per weight pair (k, c): each of its points(tile) transformed weights
// meets every tile of the call (a multiply-add each), but goes through memory once per call, which
// takes as long as kWeightReuse multiply-adds: fewer tiles than that cost as many. So F(4x4) where
// the tiles are many (it does fewer multiplies), F(2x2) where F(4x4) would have fewer than
// kWeightReuse tiles, whose 16 weights per pair instead of 36 then cost less (measured on AVX-512, 1
// and 2 threads: 256 channels at 14 x 14, batch 1, 1.05-1.07 ms against 1.61-1.69 ms for F(4x4),
// packed weights or not; 64 and 128 channels at 14 x 14, batch 1, 20-27% faster; 64 channels at 56
// x 56, 128 at 28 x 28, batch 1 to 32, and 512 at 7 x 7, batch 8, F(4x4) 10-30% faster).
int winograd_tile(const Conv2dShape& s) {
  auto cost = [&](int tile) { return points(tile) * std::max(s.batch * image_tiles(s, tile), kWeightReuse); };
  return cost(4) < cost(2) ? 4 : 2;
}

int64_t winograd_weights_size(const Conv2dShape& s) {
  return winograd_geometry(s) && winograd_channels(s) ? points(kPackedTile) * s.out_channels * s.in_channels : 0;
}

int winograd_last_forward_tile() { return last_forward_tile.load(); }

bool winograd_applies(const Conv2dShape& s) {
  // 7 x 7 pays too (measured: 512 channels at 7 x 7, 2 threads, 29.5 ms against 31.6-34.7 ms for
  // im2col + GEMM, before the weight transform was vectorized).
  // Few tiles (inference batches of small images) make narrow GEMMs whose weight operand, 16 or 36
  // K x C planes transformed per call, costs more than the saved multiplies once the weight pairs
  // far outnumber the tiles (measured, F(2x2) and F(4x4), 1 and 2 threads: 512 channels at 7 x 7,
  // batch 1 (16 tiles, 16384 pairs per tile) 5.2-9.1 ms against 2.9 ms for im2col + GEMM, batch 4
  // (4096 pairs per tile) 10.9 against 10.2 ms on 1 thread, a tie on 2); with them at most
  // kMaxPairsPerTile it wins (256 channels at 14 x 14, batch 1, 1337 pairs per tile: 2.0-2.4 against
  // 3.0 ms on 1 thread, 1.1 against 1.5 ms on 2).
  const bool enough_tiles = many_tiles(s) || pairs_per_tile_within(s, kMaxPairsPerTile);
  return winograd_geometry(s) && winograd_channels(s) && winograd_saving(s, 2) >= 1.7 && enough_tiles;
}

bool winograd_applies_to_weight_grad(const Conv2dShape& s) {
  // The weight gradient accumulates 16 K x C sums per thread over few tiles per block: at 7 x 7
  // (1.72x saving) that traffic loses to im2col + GEMM (512 channels, 2 threads: 0.61x against
  // 0.75x of PyTorch's backward), at 14 x 14 and larger it wins (256 channels: 0.82x -> 0.89x).
  // Nor do few tiles with many weight pairs (256 channels at 14 x 14, batch 1, 2 threads: 1.7-3.6 ms
  // against 1.2-1.3 ms): each thread's 16 K x C sums outweigh the tiles' work.
  return winograd_applies(s) && winograd_saving(s, 2) >= 2.0 && many_tiles(s);
}

template <class T>
WinogradWeightsLayout winograd_forward_layout(const Conv2dShape& s) {
  if (!winograd_applies(s)) return {};
  const int tile = winograd_tile(s);
  return {tile, weights_dominate(s, make_tiling<T>(s, tile)) ? packed_b_width<T>() : 1};
}

std::array<int64_t, 3> winograd_weights_shape(const Conv2dShape& s, WinogradWeightsLayout layout) {
  if (layout.tile == 0) return {0, 0, 0};
  const int64_t width = layout.width;
  return {points(layout.tile), (s.out_channels + width - 1) / width, width * s.in_channels};
}

template <class T>
bool winograd_transform_weights(int64_t out_channels, int64_t in_channels, WinogradWeightsLayout layout, const T* w,
                                T* u) {
  return transform_weights(layout.tile, out_channels, in_channels, layout.width, w, u);
}

template <class T>
bool winograd_forward(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y, const T* transformed,
                      WinogradWeightsLayout layout) {
  const int tile = winograd_tile(s);
  if (!forward_with_tile(s, tile, x, w, bias, y, transformed, layout)) return false;
  last_forward_tile = tile;
  return true;
}

template <class T>
bool winograd_backward_data(const Conv2dShape& s, const T* grad_y, const T* w, T* grad_x) {
  // dX = conv(dY, w') with w'[c][k][r][s] = w[k][c][2 - r][2 - s], padding 2 - pad, output H x W.
  const int64_t K = s.out_channels, C = s.in_channels;
  std::vector<T> flipped(static_cast<size_t>(C * K * 9));
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c)
      for (int i = 0; i < 9; ++i) flipped[(c * K + k) * 9 + (8 - i)] = w[(k * C + c) * 9 + i];
  Conv2dShape t = s;
  t.in_channels = K;
  t.out_channels = C;
  t.in_h = s.out_h;
  t.in_w = s.out_w;
  t.out_h = s.in_h;
  t.out_w = s.in_w;
  t.pad_h = 2 - s.pad_h;
  t.pad_w = 2 - s.pad_w;
  return forward_with_tile<T>(t, 2, grad_y, flipped.data(), nullptr, grad_x, nullptr, {});
}

template <class T>
bool winograd_backward_weight(const Conv2dShape& s, const T* grad_y, const T* x, T* grad_w) {
  // dU_xi (K x C) = sum over tiles of dbar_xi (K x tiles) @ V_xi^T (tiles x C): 16 GEMMs per
  // block of images, accumulated per thread; then grad_w = G^T dU G.
  const int64_t K = s.out_channels, C = s.in_channels, plane = K * C;
  const WinogradKernels<T>& kern = dispatched_kernels<T>();
  const WinogradTiling t = make_tiling<T>(s, 2);
  const int64_t blocks = (s.batch + t.images - 1) / t.images;
  const bool spread = t.slots > 1 && blocks >= t.slots;
  const int sums = spread ? t.slots : 1;
  std::vector<T> du(static_cast<size_t>(sums * 16 * plane), T(0));
  std::atomic<bool> finite{true};  // cleared once an operand is found to hold Inf or NaN
  auto run_block = [&](int64_t n0, int slot, int gemm_threads) {
    if (!finite) return;
    const int64_t n1 = std::min(s.batch, n0 + t.images), tiles = (n1 - n0) * t.per_image;
    T* v = thread_buffer<T>(0, 16 * C * tiles);
    T* dbar = thread_buffer<T>(1, 16 * K * tiles);
    T* rows = rows_buffer<T>(t);
    const int64_t image = C * s.in_h * s.in_w, grad_image = K * s.out_h * s.out_w;
    const T scale = probe_scale<T>(s.batch * t.per_image);
    if (!kern.all_finite(x + n0 * image, (n1 - n0) * image, scale) ||
        !kern.all_finite(grad_y + n0 * grad_image, (n1 - n0) * grad_image, scale)) {
      finite = false;
      return;
    }
    kern.transform_input(s, t, x, n0, n1, 0, C, v, {tiles, C * tiles}, rows);
    kern.transform_grad_output(s, t, grad_y, n0, n1, dbar, tiles, rows);
    T* du_slot = du.data() + slot * 16 * plane;
    for (int xi = 0; xi < 16; ++xi)
      gemm<T>(K, C, tiles, T(1), {dbar + xi * K * tiles, tiles, 1}, {v + xi * C * tiles, 1, tiles}, T(1),
              {du_slot + xi * plane, C, 1}, {}, gemm_threads);
  };
  if (spread) {
    run_on_threads(t.slots, [&](int slot) {
      for (int64_t b = slot; b < blocks; b += t.slots) run_block(b * t.images, slot, 1);
    });
  } else {
    for (int64_t b = 0; b < blocks; ++b) run_block(b * t.images, 0, t.slots);
  }
  if (!finite) return false;
  for (int slot = 1; slot < sums; ++slot) {
    const T* part = du.data() + slot * 16 * plane;
#pragma omp simd
    for (int64_t i = 0; i < 16 * plane; ++i) du[i] += part[i];
  }
  run_on_threads(t.slots, [&](int part) {
    kern.transform_weight_grad(du.data(), plane, plane * part / t.slots, plane * (part + 1) / t.slots, grad_w);
  });
  return true;
}

template WinogradWeightsLayout winograd_forward_layout<float>(const Conv2dShape&);
template WinogradWeightsLayout winograd_forward_layout<double>(const Conv2dShape&);
template bool winograd_transform_weights<float>(int64_t, int64_t, WinogradWeightsLayout, const float*, float*);
template bool winograd_transform_weights<double>(int64_t, int64_t, WinogradWeightsLayout, const double*, double*);
template bool winograd_forward<float>(const Conv2dShape&, const float*, const float*, const float*, float*,
                                      const float*, WinogradWeightsLayout);
template bool winograd_forward<double>(const Conv2dShape&, const double*, const double*, const double*, double*,
                                       const double*, WinogradWeightsLayout);
template bool winograd_backward_data<float>(const Conv2dShape&, const float*, const float*, float*);
template bool winograd_backward_data<double>(const Conv2dShape&, const double*, const double*, double*);
template bool winograd_backward_weight<float>(const Conv2dShape&, const float*, const float*, float*);
template bool winograd_backward_weight<double>(const Conv2dShape&, const double*, const double*, double*);

}  // namespace deepkern::cpu
