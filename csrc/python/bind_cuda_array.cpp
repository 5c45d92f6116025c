// deepkern._cuda.DeviceArray: the Python face of a device array (csrc/cuda/array.h), its creation
// functions, and its exchange with other libraries (DLPack, __cuda_array_interface__ v3).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>

#include "cuda/array.h"
#include "cuda/host_memory.h"
#include "cuda/dlpack.h"
#include "cuda/memory.h"
#include "cuda/stream.h"
#include "python/bind_cuda.h"
#include "python/cuda_array.h"

namespace py = pybind11;
namespace dkc = deepkern::cuda;

namespace {

constexpr std::size_t kMaxDims = 64;  // as NumPy

using deepkern::python::PyDeviceArray;

py::module_ numpy() { return py::module_::import("numpy"); }

dkc::DType to_dtype(const py::handle& dtype) {
  const std::string name = py::str(numpy().attr("dtype")(dtype).attr("name"));
  try {
    return dkc::dtype_from_name(name);
  } catch (const std::invalid_argument& e) {
    throw py::type_error(e.what());
  }
}

py::dtype numpy_dtype(dkc::DType dtype) {
  py::object spec = py::str(dkc::info(dtype).name);
  if (dtype == dkc::DType::bfloat16) {
    try {
      spec = py::module_::import("ml_dtypes").attr("bfloat16");
    } catch (const py::error_already_set&) {
      throw py::type_error("a bfloat16 array's NumPy dtype comes from the ml_dtypes package, which is not installed");
    }
  }
  return py::reinterpret_borrow<py::dtype>(numpy().attr("dtype")(spec));
}

std::vector<std::int64_t> to_shape(const py::handle& shape) {
  std::vector<std::int64_t> out;
  if (py::isinstance<py::int_>(shape) || py::hasattr(shape, "__index__")) {
    out.push_back(py::cast<std::int64_t>(py::module_::import("operator").attr("index")(shape)));
  } else {
    for (const py::handle extent : shape)
      out.push_back(py::cast<std::int64_t>(py::module_::import("operator").attr("index")(extent)));
  }
  if (out.size() > kMaxDims)
    throw py::value_error("shape has " + std::to_string(out.size()) + " dimensions; at most " +
                          std::to_string(kMaxDims) + " are supported");
  return out;
}

py::tuple to_tuple(const std::vector<std::int64_t>& values, std::int64_t scale = 1) {
  py::tuple t(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) t[i] = values[i] * scale;
  return t;
}

// The dtype's bytes of `value` (NumPy's conversion, as np.full does), little-endian in a uint64.
std::uint64_t fill_pattern(const py::handle& value, dkc::DType dtype) {
  const std::string bytes = py::bytes(numpy().attr("asarray")(value, numpy_dtype(dtype)).attr("tobytes")());
  std::uint64_t pattern = 0;
  std::memcpy(&pattern, bytes.data(), std::min<std::size_t>(bytes.size(), sizeof pattern));
  return pattern;
}

// The integer that names the current stream of `device` to other libraries: 1 for the legacy
// default stream (DLPack's and the CUDA array interface's convention), else the handle.
std::intptr_t stream_number(int device) {
  void* stream = dkc::current_stream(device);
  return stream == nullptr ? 1 : reinterpret_cast<std::intptr_t>(stream);
}

PyDeviceArray from_cpu(const py::handle& data, int device, bool non_blocking) {
  py::object host = numpy().attr("asarray")(data);
  if (!host.attr("flags").attr("c_contiguous").cast<bool>()) host = host.attr("copy")();
  if (!host.attr("dtype").attr("isnative").cast<bool>())
    host = host.attr("astype")(host.attr("dtype").attr("newbyteorder")("="));
  auto array = py::reinterpret_borrow<py::array>(host);
  PyDeviceArray out{dkc::empty(to_shape(host.attr("shape")), to_dtype(host.attr("dtype")), device)};
  py::gil_scoped_release release;
  dkc::copy_from_host(out.a, array.data(), non_blocking);
  return out;
}

// An uninitialised C-contiguous NumPy array in pinned host memory (host_memory.h), of a dtype
// DeviceArrays hold; the array's base owns the block.
py::array pinned_empty(const py::handle& shape, const py::handle& dtype) {
  const py::dtype numpy_type = numpy_dtype(to_dtype(dtype));
  const std::vector<std::int64_t> extents = to_shape(shape);
  std::size_t nbytes = static_cast<std::size_t>(numpy_type.itemsize());
  for (const std::int64_t extent : extents) {
    if (extent < 0) throw py::value_error("pinned_empty: negative extent in shape " + dkc::shape_text(extents));
    if (extent != 0 && nbytes > (std::size_t{1} << 50) / static_cast<std::size_t>(extent))
      throw py::value_error("pinned_empty: shape " + dkc::shape_text(extents) + " is too large");
    nbytes *= static_cast<std::size_t>(extent);
  }
  auto* block = new std::shared_ptr<void>(dkc::allocate_pinned(nbytes));
  const py::capsule owner(block, [](void* p) { delete static_cast<std::shared_ptr<void>*>(p); });
  return py::array(numpy_type, std::vector<py::ssize_t>(extents.begin(), extents.end()), block->get(), owner);
}

py::array to_cpu(const PyDeviceArray& self) {
  py::array out(numpy_dtype(self.a.dtype), self.a.shape);
  py::gil_scoped_release release;
  dkc::copy_to_host(self.a, out.mutable_data());
  return out;
}

// `item` as an integer index; TypeError for anything else (booleans and arrays included).
std::int64_t integer_index(const py::handle& item) {
  if (!py::isinstance<py::bool_>(item) && !py::isinstance<py::array>(item)) {
    try {
      return py::cast<std::int64_t>(py::module_::import("operator").attr("index")(item));
    } catch (const py::error_already_set&) {}
  }
  throw py::type_error("DeviceArray indices must be integers, slices, None or '...', got " +
                       std::string(py::str(py::type::of(item).attr("__name__"))));
}

// A view of `self` (the Python object `owner`) for a basic index: integers, slices, None and one
// Ellipsis, alone or in a tuple. Arrays and booleans as indices are a TypeError.
PyDeviceArray index_view(const py::object& owner, const PyDeviceArray& self, const py::handle& key) {
  const py::tuple items = py::isinstance<py::tuple>(key) ? py::reinterpret_borrow<py::tuple>(key) : py::make_tuple(key);
  std::size_t consumed = 0, ellipses = 0;
  for (const py::handle item : items) {
    if (item.is(py::ellipsis())) {
      ++ellipses;
    } else if (!item.is_none()) {
      ++consumed;
    }
  }
  if (ellipses > 1) throw py::index_error("an index can only have a single ellipsis ('...')");
  if (consumed > self.a.ndim())
    throw py::index_error("too many indices for array: array is " + std::to_string(self.a.ndim()) +
                          "-dimensional, but " + std::to_string(consumed) + " were indexed");
  dkc::DeviceArray view = self.a;
  view.shape.clear();
  view.strides.clear();
  std::size_t dim = 0;
  std::int64_t offset = 0;
  for (const py::handle item : items) {
    if (item.is(py::ellipsis())) {
      for (std::size_t k = 0; k < self.a.ndim() - consumed; ++k, ++dim) {
        view.shape.push_back(self.a.shape[dim]);
        view.strides.push_back(self.a.strides[dim]);
      }
    } else if (item.is_none()) {
      view.shape.push_back(1);
      view.strides.push_back(0);
    } else if (py::isinstance<py::slice>(item)) {
      py::ssize_t start, stop, step, length;
      if (!py::reinterpret_borrow<py::slice>(item).compute(self.a.shape[dim], &start, &stop, &step, &length))
        throw py::error_already_set();
      offset += start * self.a.strides[dim];
      view.shape.push_back(length);
      view.strides.push_back(step * self.a.strides[dim]);
      ++dim;
    } else {
      const std::int64_t i = integer_index(item);
      const std::int64_t extent = self.a.shape[dim];
      if (i < -extent || i >= extent)
        throw py::index_error("index " + std::to_string(i) + " is out of bounds for axis " + std::to_string(dim) +
                              " with size " + std::to_string(extent));
      offset += (i < 0 ? i + extent : i) * self.a.strides[dim];
      ++dim;
    }
  }
  for (; dim < self.a.ndim(); ++dim) {
    view.shape.push_back(self.a.shape[dim]);
    view.strides.push_back(self.a.strides[dim]);
  }
  if (view.size() > 0) view.data += offset * view.itemsize();
  return {view, self.base.is_none() ? owner : self.base};
}

// `self` as a view with its axes permuted (reversed when `axes` is empty).
PyDeviceArray transposed(const py::object& owner, const PyDeviceArray& self, std::vector<std::int64_t> axes) {
  const std::size_t n = self.a.ndim();
  if (axes.empty())
    for (std::size_t k = n; k-- > 0;) axes.push_back(static_cast<std::int64_t>(k));
  std::vector<bool> seen(n, false);
  if (axes.size() != n) throw py::value_error("transpose: axes don't match array (" + std::to_string(n) + " dims)");
  dkc::DeviceArray view = self.a;
  for (std::size_t k = 0; k < n; ++k) {
    const std::int64_t axis = axes[k] < 0 ? axes[k] + static_cast<std::int64_t>(n) : axes[k];
    if (axis < 0 || axis >= static_cast<std::int64_t>(n) || seen[axis])
      throw py::value_error("transpose: axes must be a permutation of 0.." + std::to_string(n - 1));
    seen[axis] = true;
    view.shape[k] = self.a.shape[axis];
    view.strides[k] = self.a.strides[axis];
  }
  return {view, self.base.is_none() ? owner : self.base};
}

// ---- DLPack -------------------------------------------------------------------------------------

struct ExportContext {
  DLManagedTensor managed{};
  std::vector<std::int64_t> shape, strides;
  std::shared_ptr<void> owner;
};

void delete_export(DLManagedTensor* managed) { delete static_cast<ExportContext*>(managed->manager_ctx); }

void destroy_capsule(PyObject* capsule) {
  if (PyCapsule_IsValid(capsule, "used_dltensor")) return;  // a consumer took it and will delete it
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
  if (managed == nullptr) {
    PyErr_WriteUnraisable(capsule);
    return;
  }
  managed->deleter(managed);
}

// The capsule of `a` for a consumer that will use it on `stream` (DLPack's numbering: None, 1 (or
// the disallowed 0) the legacy default stream, 2 the per-thread one, -1 no ordering, else a handle): that stream's
// later work is ordered after the work queued so far on the current stream.
py::capsule export_dlpack(const dkc::DeviceArray& a, const py::object& stream) {
  std::intptr_t consumer = stream.is_none() ? 1 : stream.cast<std::intptr_t>();
  if (consumer == 0) consumer = 1;  // the spec disallows 0; consumers that pass it mean the default stream
  if (consumer != -1 && consumer != stream_number(a.device))
    dkc::order_after(a.device, reinterpret_cast<void*>(stream_number(a.device)), reinterpret_cast<void*>(consumer));
  auto* context = new ExportContext{};
  context->shape = a.shape;
  context->strides = a.strides;
  context->owner = a.owner;
  DLTensor& t = context->managed.dl_tensor;
  t.data = a.data;
  t.device = {kDLCUDA, a.device};
  t.ndim = static_cast<std::int32_t>(a.ndim());
  t.dtype = {dkc::info(a.dtype).dl_code, static_cast<std::uint8_t>(8 * a.itemsize()), 1};
  t.shape = context->shape.data();
  t.strides = context->strides.data();
  t.byte_offset = 0;
  context->managed.manager_ctx = context;
  context->managed.deleter = delete_export;
  PyObject* capsule = PyCapsule_New(&context->managed, "dltensor", destroy_capsule);
  if (capsule == nullptr) {
    delete context;
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::capsule>(capsule);
}

PyDeviceArray import_dlpack(const py::object& producer) {
  if (!py::hasattr(producer, "__dlpack__") || !py::hasattr(producer, "__dlpack_device__"))
    throw py::type_error("from_dlpack needs an object with __dlpack__ and __dlpack_device__, got " +
                         std::string(py::str(py::type::of(producer).attr("__name__"))));
  const py::tuple where = producer.attr("__dlpack_device__")();
  const int type = where[0].cast<int>(), device = where[1].cast<int>();
  if (type != kDLCUDA)
    throw py::type_error("from_dlpack needs data on a CUDA device (DLPack device type 2), got DLPack device type " +
                         std::to_string(type) + "; copy host data with from_cpu");
  py::object capsule;
  try {
    capsule = producer.attr("__dlpack__")(py::arg("stream") = stream_number(device));
  } catch (py::error_already_set& e) {
    if (!e.matches(PyExc_TypeError)) throw;  // a producer without the stream argument
    capsule = producer.attr("__dlpack__")();
  }
  auto* managed = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), "dltensor"));
  if (managed == nullptr) throw py::error_already_set();
  if (PyCapsule_SetName(capsule.ptr(), "used_dltensor") != 0) throw py::error_already_set();
  dkc::DeviceArray a;
  a.owner = std::shared_ptr<void>(managed, [](void* p) {
    auto* m = static_cast<DLManagedTensor*>(p);
    if (m->deleter == nullptr) return;
    py::gil_scoped_acquire gil;  // producers' deleters may touch Python objects
    m->deleter(m);
  });
  const DLTensor& t = managed->dl_tensor;
  if (!dkc::dtype_from_dlpack(t.dtype.code, t.dtype.bits, t.dtype.lanes, &a.dtype))
    throw py::type_error("from_dlpack: DLPack dtype (code " + std::to_string(t.dtype.code) + ", " +
                         std::to_string(t.dtype.bits) + " bits, " + std::to_string(t.dtype.lanes) +
                         " lanes) is not supported (supported: " + dkc::supported_dtype_names() + ")");
  if (t.device.device_type != kDLCUDA || t.ndim < 0 || static_cast<std::size_t>(t.ndim) > kMaxDims)
    throw py::value_error("from_dlpack: the producer's tensor is not a CUDA tensor of at most 64 dimensions");
  a.shape.assign(t.shape, t.shape + t.ndim);
  a.strides = t.strides ? std::vector<std::int64_t>(t.strides, t.strides + t.ndim) : dkc::contiguous_strides(a.shape);
  a.data = static_cast<char*>(t.data) + t.byte_offset;
  a.device = t.device.device_id;
  return {a};
}

py::dict cuda_array_interface(const PyDeviceArray& self) {
  const dkc::DTypeInfo& dt = dkc::info(self.a.dtype);
  if (*dt.typestr == '\0')
    throw py::attribute_error(std::string("__cuda_array_interface__ has no type for ") + dt.name + "; use DLPack");
  py::dict d;
  d["shape"] = to_tuple(self.a.shape);
  d["typestr"] = dt.typestr;
  d["data"] = py::make_tuple(self.a.size() ? reinterpret_cast<std::uintptr_t>(self.a.data) : 0, false);
  d["version"] = 3;
  d["strides"] =
      self.a.is_contiguous() ? py::object(py::none()) : py::object(to_tuple(self.a.strides, self.a.itemsize()));
  d["stream"] = stream_number(self.a.device);
  return d;
}

// ---- assignment ---------------------------------------------------------------------------------

void assign(const PyDeviceArray& target, const py::handle& value) {
  if (py::isinstance<PyDeviceArray>(value)) return dkc::copy(target.a, value.cast<const PyDeviceArray&>().a);
  py::object host = numpy().attr("asarray")(value, numpy_dtype(target.a.dtype));
  if (py::cast<int>(host.attr("ndim")) == 0) return dkc::fill(target.a, fill_pattern(host, target.a.dtype));
  dkc::copy(target.a, from_cpu(host, target.a.device, false).a);
}

std::string repr(const PyDeviceArray& self) {
  std::string shape = py::str(to_tuple(self.a.shape));
  return "DeviceArray(shape=" + shape + ", dtype=" + dkc::info(self.a.dtype).name +
         ", device='cuda:" + std::to_string(self.a.device) + "')";
}

}  // namespace

const dkc::DeviceArray& device_array(const py::handle& object, const char* op, const char* name) {
  if (!py::isinstance<PyDeviceArray>(object))
    throw py::type_error(std::string(op) + ": " + name + " must be a deepkern._cuda.DeviceArray, got " +
                         std::string(py::str(py::type::of(object).attr("__name__"))));
  return object.cast<const PyDeviceArray&>().a;
}

void bind_cuda_array(py::module_& m) {
  py::class_<PyDeviceArray>(m, "DeviceArray", R"doc(
An n-dimensional array in GPU memory: a pointer, a shape, strides and a dtype. It owns a block of
deepkern's caching allocator, views another DeviceArray (``base``), or holds memory imported through
DLPack. ``strides`` are in bytes, as NumPy's; ``element_strides`` in elements, as kernels index.
Shares memory with PyTorch, CuPy and others through ``__dlpack__`` and ``__cuda_array_interface__``.
)doc")
      .def_property_readonly("shape", [](const PyDeviceArray& s) { return to_tuple(s.a.shape); })
      .def_property_readonly("dtype", [](const PyDeviceArray& s) { return numpy_dtype(s.a.dtype); })
      .def_property_readonly("strides", [](const PyDeviceArray& s) { return to_tuple(s.a.strides, s.a.itemsize()); })
      .def_property_readonly("element_strides", [](const PyDeviceArray& s) { return to_tuple(s.a.strides); })
      .def_property_readonly("ndim", [](const PyDeviceArray& s) { return s.a.ndim(); })
      .def_property_readonly("size", [](const PyDeviceArray& s) { return s.a.size(); })
      .def_property_readonly("itemsize", [](const PyDeviceArray& s) { return s.a.itemsize(); })
      .def_property_readonly("nbytes", [](const PyDeviceArray& s) { return s.a.nbytes(); })
      .def_property_readonly("device_index", [](const PyDeviceArray& s) { return s.a.device; })
      .def_property_readonly(
          "device",
          [](const PyDeviceArray& s) {
            return py::module_::import("deepkern.backends").attr("Device")("cuda", s.a.device);
          },
          "The deepkern.backends.Device the data is on ('cuda:N').")
      .def_property_readonly(
          "base", [](const PyDeviceArray& s) { return s.base; },
          "The DeviceArray whose memory this one views; None when it owns its memory.")
      .def_property_readonly(
          "data_ptr", [](const PyDeviceArray& s) { return reinterpret_cast<std::uintptr_t>(s.a.data); },
          "The device address of the first element.")
      .def(
          "is_contiguous", [](const PyDeviceArray& s) { return s.a.is_contiguous(); }, "Whether it is C-contiguous.")
      .def_property_readonly(
          "flags",
          [](const PyDeviceArray& s) {
            return py::module_::import("types").attr("SimpleNamespace")(
                py::arg("c_contiguous") = s.a.is_contiguous(), py::arg("writeable") = true, py::arg("aligned") = true,
                py::arg("owndata") = s.base.is_none());
          },
          "NumPy's flags that ops read: c_contiguous, writeable, aligned, owndata.")
      .def("__len__",
           [](const PyDeviceArray& s) {
             if (s.a.ndim() == 0) throw py::type_error("len() of a 0-d DeviceArray");
             return s.a.shape[0];
           })
      .def("__repr__", &repr)
      .def(
          "reshape",
          [](const py::object& self, const py::args& args) {
            const auto& s = self.cast<const PyDeviceArray&>();
            const py::handle shape = args.size() == 1 ? args[0] : py::handle(args);
            const py::object base = !s.a.is_contiguous() ? py::none() : s.base.is_none() ? self : s.base;
            return PyDeviceArray{dkc::reshape(s.a, to_shape(shape)), base};
          },
          "Another shape (one extent may be -1): a view of a C-contiguous array, else a C-contiguous copy "
          "(as NumPy's reshape where no view is possible).")
      .def(
          "transpose",
          [](const py::object& self, const py::args& args) {
            const py::handle axes = args.size() == 1 ? args[0] : py::handle(args);
            return transposed(self, self.cast<const PyDeviceArray&>(), to_shape(axes));
          },
          "A view with the axes permuted (reversed without arguments).")
      .def(
          "swapaxes",
          [](const py::object& self, std::int64_t axis1, std::int64_t axis2) {
            const auto& s = self.cast<const PyDeviceArray&>();
            const auto n = static_cast<std::int64_t>(s.a.ndim());
            for (const std::int64_t axis : {axis1, axis2})
              if (axis < -n || axis >= n)
                throw py::value_error("swapaxes: axis " + std::to_string(axis) + " is out of bounds for an array of " +
                                      std::to_string(n) + " dimensions");
            std::vector<std::int64_t> axes(n);
            for (std::int64_t k = 0; k < n; ++k) axes[k] = k;
            std::swap(axes[(axis1 + n) % n], axes[(axis2 + n) % n]);
            return transposed(self, s, axes);
          },
          py::arg("axis1"), py::arg("axis2"), "A view with two axes exchanged.")
      .def(
          "view",
          [](const py::object& self, const py::object& dtype) {
            const auto& s = self.cast<const PyDeviceArray&>();
            const dkc::DType target = to_dtype(dtype);
            if (dkc::info(target).itemsize != s.a.itemsize())
              throw py::value_error(std::string("view: ") + dkc::info(s.a.dtype).name + " and " +
                                    dkc::info(target).name + " differ in size; only same-size dtypes can be viewed");
            PyDeviceArray out{s.a, s.base.is_none() ? self : s.base};
            out.a.dtype = target;
            return out;
          },
          py::arg("dtype"), "The same memory seen as another dtype of the same size (bits unchanged).")
      .def_property_readonly(
          "T", [](const py::object& self) { return transposed(self, self.cast<const PyDeviceArray&>(), {}); })
      .def("__getitem__",
           [](const py::object& self, const py::object& key) {
             return index_view(self, self.cast<const PyDeviceArray&>(), key);
           })
      .def(
          "__setitem__",
          [](const py::object& self, const py::object& key, const py::object& value) {
            assign(index_view(self, self.cast<const PyDeviceArray&>(), key), value);
          },
          "Writes a DeviceArray (same dtype, broadcast), a number or host data into the indexed elements.")
      .def(
          "copy", [](const PyDeviceArray& s) { return PyDeviceArray{dkc::contiguous(s.a, true)}; },
          "A C-contiguous copy on the same device.")
      .def(
          "astype",
          [](const py::object& self, const py::object& dtype, const std::string& order, bool copy) -> py::object {
            const auto& s = self.cast<const PyDeviceArray&>();
            if (order != "C" && order != "K" && order != "A")
              throw py::value_error("astype: order must be 'C', 'K' or 'A' (the result is C-contiguous), got '" +
                                    order + "'");
            const dkc::DType target = to_dtype(dtype);
            if (target == s.a.dtype && !copy && s.a.is_contiguous()) return self;
            return py::cast(PyDeviceArray{dkc::astype(s.a, target)});
          },
          py::arg("dtype"), py::arg("order") = "K", py::arg("copy") = true,
          "The values in `dtype`, converted as NumPy converts them, in a new C-contiguous array (any strides in); "
          "with copy=False, the array itself when it already is C-contiguous and of `dtype`.")
      .def(
          "fill",
          [](const py::object& self, const py::object& value) {
            const auto& s = self.cast<const PyDeviceArray&>();
            dkc::fill(s.a, fill_pattern(value, s.a.dtype));
            return self;
          },
          py::arg("value"), "Sets every element to `value` (converted as NumPy converts it); returns the array.")
      .def("to_cpu", &to_cpu, "A NumPy array holding a copy of the data (waits for the copy).")
      .def("item",
           [](const PyDeviceArray& s) {
             if (s.a.size() != 1)
               throw py::value_error("item() needs a one-element array, got shape " +
                                     std::string(py::str(to_tuple(s.a.shape))));
             return to_cpu(s).attr("item")();
           })
      .def("tolist", [](const PyDeviceArray& s) { return to_cpu(s).attr("tolist")(); })
      .def("__array__",
           [](const PyDeviceArray&, const py::args&, const py::kwargs&) -> py::object {
             throw py::type_error("a DeviceArray is in GPU memory: copy it to host memory with to_cpu() first");
           })
      .def(
          "__dlpack__",
          [](const PyDeviceArray& s, const py::object& stream, const py::object& max_version,
             const py::object& dl_device, const py::object& copy) {
            if (!dl_device.is_none()) {
              const py::tuple want = dl_device;
              if (want[0].cast<int>() != kDLCUDA || want[1].cast<int>() != s.a.device)
                throw py::buffer_error("__dlpack__: cannot export a cuda:" + std::to_string(s.a.device) +
                                       " array to another device");
            }
            const bool copied = !copy.is_none() && copy.cast<bool>();
            return export_dlpack(copied ? dkc::contiguous(s.a, true) : s.a, stream);
          },
          py::kw_only(), py::arg("stream") = py::none(), py::arg("max_version") = py::none(),
          py::arg("dl_device") = py::none(), py::arg("copy") = py::none())
      .def("__dlpack_device__",
           [](const PyDeviceArray& s) { return py::make_tuple(static_cast<int>(kDLCUDA), s.a.device); })
      .def_property_readonly("__cuda_array_interface__", &cuda_array_interface)
      .def_static("from_dlpack", &import_dlpack, py::arg("obj"),
                  "A DeviceArray sharing the memory of any object on a CUDA device with __dlpack__ (no copy).");

  m.def(
      "empty",
      [](const py::object& shape, const py::object& dtype, int device) {
        return PyDeviceArray{dkc::empty(to_shape(shape), to_dtype(dtype), device)};
      },
      py::arg("shape"), py::arg("dtype") = "float32", py::arg("device") = 0,
      "An uninitialized C-contiguous DeviceArray.");
  m.def(
      "full",
      [](const py::object& shape, const py::object& value, const py::object& dtype, int device) {
        PyDeviceArray out{dkc::empty(to_shape(shape), to_dtype(dtype), device)};
        dkc::fill(out.a, fill_pattern(value, out.a.dtype));
        return out;
      },
      py::arg("shape"), py::arg("value"), py::arg("dtype") = "float32", py::arg("device") = 0,
      "A C-contiguous DeviceArray with every element `value`.");
  m.def("from_cpu", &from_cpu, py::arg("array"), py::arg("device") = 0, py::arg("non_blocking") = false,
        "A C-contiguous DeviceArray holding a copy of host data (any NumPy array, strided or not, or array-like). "
        "With non_blocking, a C-contiguous native array in pinned memory from pinned_empty is copied without "
        "waiting (on the current stream); any other data waits for its copy.");
  m.def("pinned_empty", &pinned_empty, py::arg("shape"), py::arg("dtype") = "float32",
        "An uninitialised C-contiguous NumPy array in pinned (page-locked) host memory, from deepkern's cache.");
  m.def(
      "is_pinned", [](const py::array& array) { return dkc::is_pinned(array.data()); }, py::arg("array"),
      "Whether a NumPy array's memory is page-locked host memory the CUDA runtime knows.");
}
