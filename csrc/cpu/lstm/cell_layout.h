// The layouts of the recurrent cells, what a layer driver (cpu/lstm/lstm.cpp, cuda/lstm/lstm.cu)
// needs to know of each: kGates, gate blocks of H rows in W_ih and W_hh; kAct, blocks of H of the
// cached activations per row (0: none); kGrad, blocks of H per row of the gate gradients dG, and
// which of them (kIh, kHh: Segments) are the gradients of which gate blocks of W_ih x and of W_hh h;
// kCell, whether there is a cell state c; kOwnRecurrence, whether W_hh h + b_hh goes into rows of
// its own rather than onto the gate pre-activations. Plain C++ constants (the CUDA host code reads
// them too).
#pragma once
#include <array>
#include <cstdint>

namespace deepkern::cell_layout {

struct Segment {
  std::int64_t col, row, blocks;  // dG's blocks [col, col + blocks) are the gradients of gate blocks from row
};

struct Lstm {
  static constexpr std::int64_t kGates = 4, kAct = 4, kGrad = 4;
  static constexpr bool kCell = true, kOwnRecurrence = false;
  static constexpr std::array<Segment, 1> kIh{{{0, 0, 4}}}, kHh = kIh;
};

// dG blocks: r, z, r * (gradient of n's pre-activation) for W_hn h, that gradient itself for W_in x.
struct Gru {
  static constexpr std::int64_t kGates = 3, kAct = 4, kGrad = 4;
  static constexpr bool kCell = false, kOwnRecurrence = true;
  static constexpr std::array<Segment, 2> kIh{{{0, 0, 2}, {3, 2, 1}}};
  static constexpr std::array<Segment, 1> kHh{{{0, 0, 3}}};
};

struct Rnn {
  static constexpr std::int64_t kGates = 1, kAct = 0, kGrad = 1;
  static constexpr bool kCell = false, kOwnRecurrence = false;
  static constexpr std::array<Segment, 1> kIh{{{0, 0, 1}}}, kHh = kIh;
};

}  // namespace deepkern::cell_layout
