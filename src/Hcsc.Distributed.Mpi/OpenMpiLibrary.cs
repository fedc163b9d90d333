using System.Runtime.InteropServices;

namespace Hcsc.Distributed.Mpi;

/// <summary>
/// The few MPI functions and predefined handles the collectives use, bound at run time from Open MPI's
/// <c>libmpi</c>. Open MPI's handles (<c>MPI_Comm</c>, <c>MPI_Datatype</c>, <c>MPI_Op</c>) are pointers, and the
/// predefined ones (<c>MPI_COMM_WORLD</c>, <c>MPI_FLOAT</c>, <c>MPI_SUM</c>, …) are the addresses of exported globals
/// (<c>ompi_mpi_comm_world</c>, <c>ompi_mpi_float</c>, <c>ompi_mpi_op_sum</c>, …): this is Open MPI's ABI, not MPICH's
/// (whose handles are integers), so the binding works with Open MPI only.
/// </summary>
internal sealed unsafe class OpenMpiLibrary
{
    /// <summary>MPI_THREAD_SERIALIZED in Open MPI's <c>mpi.h</c>: any thread may call, one at a time.</summary>
    public const int ThreadSerialized = 2;

    /// <summary>MPI_IN_PLACE in Open MPI's <c>mpi.h</c>.</summary>
    public static readonly void* InPlace = (void*)1;

    private OpenMpiLibrary(nint handle, string path)
    {
        Handle = handle;
        Path = path;
        CommWorld = Global(handle, path, "ompi_mpi_comm_world");
        Byte = Global(handle, path, "ompi_mpi_byte");
        Int = Global(handle, path, "ompi_mpi_int");
        Float = Global(handle, path, "ompi_mpi_float");
        Double = Global(handle, path, "ompi_mpi_double");
        Int64 = Global(handle, path, "ompi_mpi_int64_t");
        Sum = Global(handle, path, "ompi_mpi_op_sum");

        Initialized = (delegate* unmanaged<int*, int>)Function(handle, path, "MPI_Initialized");
        Finalized = (delegate* unmanaged<int*, int>)Function(handle, path, "MPI_Finalized");
        InitThread = (delegate* unmanaged<int*, byte***, int, int*, int>)Function(handle, path, "MPI_Init_thread");
        Finalize = (delegate* unmanaged<int>)Function(handle, path, "MPI_Finalize");
        CommRank = (delegate* unmanaged<nint, int*, int>)Function(handle, path, "MPI_Comm_rank");
        CommSize = (delegate* unmanaged<nint, int*, int>)Function(handle, path, "MPI_Comm_size");
        Allreduce = (delegate* unmanaged<void*, void*, int, nint, nint, nint, int>)Function(handle, path, "MPI_Allreduce");
        Allgather = (delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int>)Function(handle, path, "MPI_Allgather");
        Allgatherv = (delegate* unmanaged<void*, int, nint, void*, int*, int*, nint, nint, int>)Function(handle, path, "MPI_Allgatherv");
        Bcast = (delegate* unmanaged<void*, int, nint, int, nint, int>)Function(handle, path, "MPI_Bcast");
        Barrier = (delegate* unmanaged<nint, int>)Function(handle, path, "MPI_Barrier");
        Abort = (delegate* unmanaged<nint, int, int>)Function(handle, path, "MPI_Abort");
        TypeContiguous = (delegate* unmanaged<int, nint, nint*, int>)Function(handle, path, "MPI_Type_contiguous");
        TypeCommit = (delegate* unmanaged<nint*, int>)Function(handle, path, "MPI_Type_commit");
        TypeFree = (delegate* unmanaged<nint*, int>)Function(handle, path, "MPI_Type_free");
        GetLibraryVersion = (delegate* unmanaged<byte*, int*, int>)Function(handle, path, "MPI_Get_library_version");
        ErrorStringFunction = (delegate* unmanaged<int, byte*, int*, int>)Function(handle, path, "MPI_Error_string");
    }

    public nint Handle { get; }

    public string Path { get; }

    public nint CommWorld { get; }

    public nint Byte { get; }

    public nint Int { get; }

    public nint Float { get; }

    public nint Double { get; }

    public nint Int64 { get; }

    public nint Sum { get; }

    public delegate* unmanaged<int*, int> Initialized { get; }

    public delegate* unmanaged<int*, int> Finalized { get; }

    public delegate* unmanaged<int*, byte***, int, int*, int> InitThread { get; }

    public delegate* unmanaged<int> Finalize { get; }

    public delegate* unmanaged<nint, int*, int> CommRank { get; }

    public delegate* unmanaged<nint, int*, int> CommSize { get; }

    public delegate* unmanaged<void*, void*, int, nint, nint, nint, int> Allreduce { get; }

    public delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int> Allgather { get; }

    public delegate* unmanaged<void*, int, nint, void*, int*, int*, nint, nint, int> Allgatherv { get; }

    public delegate* unmanaged<void*, int, nint, int, nint, int> Bcast { get; }

    public delegate* unmanaged<nint, int> Barrier { get; }

    public delegate* unmanaged<nint, int, int> Abort { get; }

    public delegate* unmanaged<int, nint, nint*, int> TypeContiguous { get; }

    public delegate* unmanaged<nint*, int> TypeCommit { get; }

    public delegate* unmanaged<nint*, int> TypeFree { get; }

    public delegate* unmanaged<byte*, int*, int> GetLibraryVersion { get; }

    private delegate* unmanaged<int, byte*, int*, int> ErrorStringFunction { get; }

    /// <summary>The file names tried when neither a path nor <c>HCSC_LIBMPI</c> is given.</summary>
    public static IReadOnlyList<string> DefaultNames { get; } =
        OperatingSystem.IsMacOS() ? ["libmpi.40.dylib", "libmpi.dylib"] : ["libmpi.so.40", "libmpi.so"];

    /// <summary>
    /// Loads Open MPI's library: <paramref name="path"/> when given, else the file named by <c>HCSC_LIBMPI</c>, else the
    /// first of <see cref="DefaultNames"/> the dynamic loader finds. Throws <see cref="DllNotFoundException"/> saying how to
    /// install Open MPI, or <see cref="NotSupportedException"/> for an MPI library that is not Open MPI.
    /// </summary>
    public static OpenMpiLibrary Load(string? path)
    {
        string? fromEnvironment = Environment.GetEnvironmentVariable(MpiCollectives.LibraryEnvironmentVariable);
        string[] candidates = !string.IsNullOrEmpty(path) ? [path]
            : !string.IsNullOrEmpty(fromEnvironment) ? [fromEnvironment]
            : [.. DefaultNames];
        var failures = new List<string>();
        foreach (string candidate in candidates)
        {
            nint handle;
            try
            {
                handle = NativeLibrary.Load(candidate);
            }
            catch (DllNotFoundException e)
            {
                failures.Add($"{candidate}: {FirstLine(e.Message)}");
                continue;
            }

            if (!NativeLibrary.TryGetExport(handle, "ompi_mpi_comm_world", out _))
            {
                throw new NotSupportedException(
                    $"{candidate} is an MPI library but not Open MPI's (it has no ompi_mpi_comm_world): Hcsc.Distributed.Mpi binds " +
                    "Open MPI's ABI (the Debian and Ubuntu default), not MPICH, Intel MPI or MS-MPI. Install Open MPI " +
                    $"(apt-get install openmpi-bin libopenmpi-dev) or set {MpiCollectives.LibraryEnvironmentVariable} to Open MPI's libmpi.so.40.");
            }

            return new OpenMpiLibrary(handle, candidate);
        }

        string source = !string.IsNullOrEmpty(path) ? "the path given"
            : !string.IsNullOrEmpty(fromEnvironment) ? $"{MpiCollectives.LibraryEnvironmentVariable}"
            : "the default names";
        throw new DllNotFoundException(
            $"Could not load Open MPI's library (from {source}): {string.Join("; ", failures)}. Install Open MPI — on Debian or Ubuntu " +
            $"`apt-get install openmpi-bin libopenmpi-dev` — or set {MpiCollectives.LibraryEnvironmentVariable} to the full path of Open MPI's libmpi.so.40.");
    }

    /// <summary>Open MPI's text for an error code, e.g. "MPI_ERR_COUNT: invalid count argument".</summary>
    public string ErrorString(int code)
    {
        byte* text = stackalloc byte[1024];
        int length = 0;
        return ErrorStringFunction(code, text, &length) == 0 ? Marshal.PtrToStringUTF8((nint)text, length) : $"MPI error {code}";
    }

    private static nint Global(nint handle, string path, string name) =>
        NativeLibrary.TryGetExport(handle, name, out nint address)
            ? address
            : throw new NotSupportedException($"{path} does not export {name}: not an Open MPI library this binding knows.");

    private static nint Function(nint handle, string path, string name) =>
        NativeLibrary.TryGetExport(handle, name, out nint address)
            ? address
            : throw new NotSupportedException($"{path} does not export {name}.");

    private static string FirstLine(string message)
    {
        int end = message.IndexOf('\n', StringComparison.Ordinal);
        return (end < 0 ? message : message[..end]).Trim();
    }
}
