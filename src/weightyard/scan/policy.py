"""Which callables a pickle may import: an allow-list of what real checkpoints use, a deny-list of what
is known to run code, and everything else unknown (which is never `safe`)."""

from __future__ import annotations

import enum
import re


def words(text: str) -> frozenset[str]:
    """A set from whitespace-separated names, the readable way to write long name lists."""
    return frozenset(text.split())


class Kind(enum.Enum):
    SAFE = "safe"
    DANGEROUS = "dangerous"
    UNKNOWN = "unknown"


# Loaders that unpickle a bytes argument. Their argument is scanned as a nested pickle; the
# torch one is what `pickle.dumps(tensor)` emits, the others have no benign use inside a model file.
NESTING_LOADERS: frozenset[str] = frozenset(
    {
        "torch.storage._load_from_bytes",
        "pickle.loads",
        "_pickle.loads",
        "dill.loads",
        "dill._dill.loads",
        "cloudpickle.loads",
        "torch.load",
        "torch.serialization.load",
        "numpy.load",
        "joblib.load",
        "joblib.numpy_pickle.load",
    }
)
BENIGN_NESTING_LOADER = "torch.storage._load_from_bytes"

# Modules whose every member can execute code, touch files, processes or the network, or import more.
_DANGEROUS_MODULES: frozenset[str] = words(
    """
    os posix nt posixpath ntpath subprocess sys socket shutil runpy pty pickle _pickle pickletools
    marshal importlib pkgutil code codeop ctypes _ctypes multiprocessing asyncio webbrowser http urllib
    urllib3 requests aiohttp httpx ssl ftplib smtplib telnetlib poplib imaplib nntplib socketserver
    xmlrpc pip ensurepip venv setuptools distutils profile cProfile trace pdb bdb timeit doctest idlelib
    lib2to3 glob fileinput signal threading _thread concurrent shelve dbm sqlite3 zipimport imp site
    sysconfig platform types functools operator _operator io _io tempfile builtins dill cloudpickle
    commands inspect gc ast tokenize compileall py_compile zipapp tarfile zipfile gzip bz2 lzma
    logging.config numpy.f2py numpy.distutils numpy.ctypeslib numpy.testing numpy.load numpy.lib.npyio
    torch.hub torch.jit torch._dynamo torch._inductor torch.utils.cpp_extension torch.package
    torch.distributed torch.fx torch.ops torch.classes torch.library torch.load torch.serialization.load
    torch._C joblib.load joblib.numpy_pickle.load joblib.parallel joblib.Parallel keras tensorflow
    linecache pydoc pipes mailcap cgi cgitb tkinter turtle _posixsubprocess _winapi msvcrt winreg fcntl
    resource select selectors mmap atexit unittest test pkg_resources asyncore asynchat smtpd
    numpy.lib.format numpy.fromfile numpy.loadtxt numpy.genfromtxt numpy.memmap numpy.save numpy.savez
    numpy.savetxt numpy.DataSource pandas.io pandas.read_pickle pandas.eval pandas.core.computation
    torch.serialization torch.multiprocessing torch.export huggingface_hub boto3 botocore fsspec
    smart_open paramiko git yaml jinja2 mako IPython sympy numexpr
    """
)

# Names that, appearing anywhere in a dotted import path, mean an attribute walk reaches something that
# runs code (`torch.serialization.os.system` is `os.system`).
_DANGEROUS_SEGMENTS: frozenset[str] = words(
    """
    os posix nt subprocess sys builtins __builtin__ __builtins__ socket shutil runpy pty pickle _pickle
    marshal importlib pkgutil ctypes multiprocessing asyncio webbrowser pip ensurepip eval exec compile
    system popen execv execve execl execvp spawnl spawnv getattr setattr delattr __import__
    import_module __getattribute__ __getattr__ __subclasses__ __globals__ __code__ __reduce__
    __reduce_ex__ __class__ __dict__ __init__ __new__ __call__ __setstate__ open loads load
    write_text write_bytes read_text read_bytes unlink rmdir rename touch mkdir chmod symlink_to hardlink_to
    """
)

_DANGEROUS_BUILTINS: frozenset[str] = words(
    """
    eval exec compile open __import__ getattr setattr delattr globals locals vars breakpoint input help
    exit quit memoryview __build_class__ classmethod staticmethod property super type print dir
    """
)

# Allowed callables that allocate what an argument says (index of the size or shape argument): the
# walker checks the size, since `bytearray(2**40)` is a denial of service through an allowed name.
SIZE_ARGUMENTS: dict[str, int] = {
    "builtins.bytearray": 0,
    "builtins.bytes": 0,
    "numpy.ndarray": 0,
    "numpy.core.multiarray._reconstruct": 1,
    "numpy._core.multiarray._reconstruct": 1,
    "numpy.ma.core._mareconstruct": 2,
}
# Layers allocate their weights in __init__, which a direct call (rather than __new__ + state) runs.
ALLOCATING_CLASSES = "torch.nn.modules."
# Allowed constructors whose integer arguments are element counts or dimensions (bytes per element).
ELEMENT_ALLOCATORS: dict[str, int] = {
    "torch.Tensor": 4,
    "torch.UntypedStorage": 1,
    "torch.storage.UntypedStorage": 1,
    "torch.storage.TypedStorage": 8,
    **{
        f"torch.{kind}Storage": size
        for kind, size in (
            ("Double", 8), ("Float", 4), ("Half", 2), ("BFloat16", 2), ("Long", 8), ("Int", 4),
            ("Short", 2), ("Char", 1), ("Byte", 1), ("Bool", 1), ("ComplexDouble", 16),
            ("ComplexFloat", 8), ("QInt8", 1), ("QUInt8", 1), ("QInt32", 4),
        )
    },
}  # fmt: skip
# Allowed constructors that build every element of their first argument (`list(range(2**31))`).
MATERIALIZERS: frozenset[str] = words(
    """
    builtins.list builtins.tuple builtins.set builtins.frozenset builtins.bytes builtins.bytearray
    builtins.dict collections.deque collections.OrderedDict collections.Counter collections.defaultdict
    """
)
# Allowed helpers that call one of their arguments: name -> (index of the callable, index of its args).
CALLING_HELPERS: dict[str, tuple[int, int]] = {
    "torch._utils._rebuild_from_type_v2": (0, 2),
    "torch._tensor._rebuild_from_type_v2": (0, 2),
}
# joblib < 0.10 wrappers whose `filename` state names a side file the loader opens.
SIDE_FILE_WRAPPERS: frozenset[str] = words(
    "joblib.numpy_pickle_compat.NDArrayWrapper joblib.numpy_pickle_compat.ZNDArrayWrapper"
)

_SAFE_EXACT: frozenset[str] = words(
    """
    builtins.set builtins.frozenset builtins.slice builtins.complex builtins.range builtins.bytearray
    builtins.bytes builtins.tuple builtins.list builtins.dict builtins.int builtins.float builtins.bool
    builtins.str builtins.object builtins.Ellipsis builtins.NotImplemented collections.OrderedDict
    collections.defaultdict collections.Counter collections.deque copyreg._reconstructor
    copyreg.__newobj__ copyreg.__newobj_ex__ _codecs.encode datetime.datetime datetime.date
    datetime.time datetime.timedelta datetime.timezone decimal.Decimal fractions.Fraction uuid.UUID
    argparse.Namespace re._compile pathlib.Path pathlib.PosixPath pathlib.WindowsPath pathlib.PurePath
    pathlib.PurePosixPath pathlib.PureWindowsPath numpy.ndarray numpy.dtype
    numpy.core.multiarray._reconstruct numpy._core.multiarray._reconstruct numpy.core.multiarray.scalar
    numpy._core.multiarray.scalar numpy.core.numeric._frombuffer numpy._core.numeric._frombuffer
    numpy.ma.core._mareconstruct numpy.ma.core.MaskedArray numpy.random._pickle.__bit_generator_ctor
    numpy.random._pickle.__randomstate_ctor numpy.random._pickle.__generator_ctor
    numpy.random.mtrand.RandomState numpy.random._mt19937.MT19937 numpy.random._pcg64.PCG64
    numpy.random._pcg64.PCG64DXSM numpy.random._philox.Philox numpy.random._sfc64.SFC64
    numpy.random.bit_generator.SeedSequence
    numpy.random._generator.Generator torch._utils._rebuild_tensor torch._utils._rebuild_tensor_v2
    torch._utils._rebuild_tensor_v3 torch._utils._rebuild_parameter
    torch._utils._rebuild_parameter_with_state torch._utils._rebuild_qtensor
    torch._utils._rebuild_sparse_tensor torch._utils._rebuild_nested_tensor
    torch._utils._rebuild_device_tensor_from_numpy torch._utils._rebuild_device_tensor_from_cpu_tensor
    torch._utils._rebuild_meta_tensor_no_storage torch._utils._rebuild_wrapper_subclass
    torch.serialization._get_layout torch._tensor._rebuild_from_type_v2 torch._utils._rebuild_from_type_v2
    torch.storage._load_from_bytes torch.Size torch.device torch.Tensor torch.nn.parameter.Parameter
    torch.nn.parameter.Buffer torch.storage.TypedStorage torch.storage.UntypedStorage
    torch.UntypedStorage torch.torch_version.TorchVersion torch.jit._pickle.build_intlist
    torch.jit._pickle.build_tensor_from_id torch.jit._pickle.build_doublelist
    pandas.core.indexes.base._new_Index pandas._libs.internals._unpickle_block
    pandas._libs.tslibs.timestamps._unpickle_timestamp pandas._libs.tslibs.timedeltas._timedelta_unpickle
    pandas.core.internals.blocks.new_block pandas._libs.arrays.__pyx_unpickle_NDArrayBacked
    torch.jit._pickle.build_boollist torch.jit._pickle.build_tensorlist
    torch.jit._pickle.restore_type_tag joblib.numpy_pickle.NumpyArrayWrapper
    joblib.numpy_pickle_compat.NDArrayWrapper joblib.numpy_pickle_compat.ZNDArrayWrapper
    """
)

# Attribute values torch pickles by name: dtypes, layouts, memory formats, quantisation schemes.
_TORCH_CONSTANTS: frozenset[str] = words(
    """
    float32 float float64 double float16 half bfloat16 complex32 complex64 cfloat complex128 cdouble
    uint8 int8 int16 short int32 int int64 long bool qint8 quint8 qint32 quint4x2 quint2x4 float8_e4m3fn
    float8_e5m2 float8_e4m3fnuz float8_e5m2fnuz uint16 uint32 uint64 strided sparse_coo sparse_csr
    sparse_csc sparse_bsr sparse_bsc _mkldnn contiguous_format channels_last channels_last_3d
    preserve_format per_tensor_affine per_channel_affine per_tensor_symmetric per_channel_symmetric
    per_channel_affine_float_qparams
    """
)
_TORCH_STORAGE = re.compile(r"^(?:[A-Z][A-Za-z0-9]*)?Storage$")
_NUMPY_SCALARS: frozenset[str] = words(
    """
    bool_ int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64 longdouble complex64
    complex128 clongdouble str_ bytes_ void object_ datetime64 timedelta64 intc uintc intp uintp
    """
)
# Pure numeric functions that fitted transformers (FunctionTransformer(np.log1p)) keep by name.
_NUMPY_MATH: frozenset[str] = words(
    """
    abs absolute add arccos arccosh arcsin arcsinh arctan arctan2 arctanh cbrt ceil clip cos cosh deg2rad
    degrees divide exp exp2 expm1 fabs floor floor_divide fmax fmin fmod hypot log log10 log1p log2
    logaddexp maximum minimum mod multiply negative positive power rad2deg radians reciprocal remainder
    rint sign sin sinh sqrt square subtract tan tanh true_divide trunc mean median sum prod std var amax
    amin max min nanmean nanmedian nansum nanstd nanmax nanmin argmax argmin isnan isfinite isinf
    """
)
_CLASS_NAME = re.compile(r"^_?[A-Z][A-Za-z0-9_]*$")
# Library namespaces whose classes only hold state: instantiating them runs their own constructors or
# __setstate__, never code from the file. Testing and vendored helpers are left out.
_STATEFUL_CLASS_NAMESPACES: tuple[str, ...] = (
    "sklearn.",
    "torch.nn.modules.",
    "torch.optim.",
    "xgboost.",
    "lightgbm.",
    "pandas.core.",
    "numpy.dtypes",
)
_EXCLUDED_SUBSTRINGS: tuple[str, ...] = ("_testing", ".tests", "externals", "fixes", "cpp_extension")
_SCIPY_SPARSE = re.compile(r"^scipy\.sparse(\.[A-Za-z_0-9]+)*$")
_SCIPY_SPARSE_NAMES = re.compile(r"^(csr|csc|coo|lil|dok|bsr|dia)_(matrix|array)$")


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def classify(module: str, qualname: str) -> tuple[Kind, str]:
    """Classify the callable `module.qualname` that a GLOBAL/STACK_GLOBAL/INST would import."""
    full = f"{module}.{qualname}"
    parts = module.split(".") + qualname.split(".")
    if full in _SAFE_EXACT:
        return Kind.SAFE, "allow-listed"
    if module == "builtins" and qualname in _DANGEROUS_BUILTINS:
        return Kind.DANGEROUS, f"builtin {qualname} runs code or reaches arbitrary objects"
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        if prefix in _DANGEROUS_MODULES:
            return Kind.DANGEROUS, f"{prefix} can execute code, touch files or processes"
    allowed_dunders = {"__newobj__", "__newobj_ex__", "__torch__"}
    for part in parts:
        if part in _DANGEROUS_SEGMENTS or (_is_dunder(part) and part not in allowed_dunders):
            return Kind.DANGEROUS, f"attribute path through {part!r} reaches code execution"
    if module == "torch" and (qualname in _TORCH_CONSTANTS or _TORCH_STORAGE.match(qualname)):
        return Kind.SAFE, "torch dtype, layout or storage type"
    if module == "numpy" and qualname in _NUMPY_SCALARS:
        return Kind.SAFE, "numpy scalar type"
    if module == "numpy" and qualname in _NUMPY_MATH:
        return Kind.SAFE, "pure numpy math function"
    if module.startswith("sklearn.") and qualname == "newObj":
        return Kind.SAFE, "scikit-learn's Cython object constructor (cls.__new__(cls))"
    if module.startswith("__torch__"):
        return Kind.SAFE, "TorchScript class compiled from the archive's own code"
    if "." not in qualname and _CLASS_NAME.match(qualname):
        stateful = any(module.startswith(ns) or module == ns.rstrip(".") for ns in _STATEFUL_CLASS_NAMESPACES)
        if stateful and not any(s in module for s in _EXCLUDED_SUBSTRINGS):
            return Kind.SAFE, "state-only library class"
    if qualname.startswith("__pyx_unpickle_") and module.startswith(("numpy.random.", "sklearn.")):
        return Kind.SAFE, "Cython state restorer of an allow-listed extension type"
    if _SCIPY_SPARSE.match(module) and _SCIPY_SPARSE_NAMES.match(qualname):
        return Kind.SAFE, "scipy sparse container"
    return Kind.UNKNOWN, "not on the allow-list of callables model files use"
