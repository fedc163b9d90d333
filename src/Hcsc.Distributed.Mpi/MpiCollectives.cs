using System.Runtime.InteropServices;
using Hcsc.Core.Distributed;

namespace Hcsc.Distributed.Mpi;

/// <summary>
/// <see cref="ICollectives"/> over MPI_COMM_WORLD of the system's Open MPI, for processes started by an MPI launcher
/// (<c>mpirun -np N dotnet app.dll …</c>, or <c>srun --mpi=pmix …</c> under Slurm): one process a rank, each with its
/// own device. Create it once per process with <see cref="Initialize"/>, use it from one thread at a time, and dispose it
/// at the end (MPI_Finalize); MPI cannot be initialised again in the same process afterwards.
/// </summary>
/// <remarks>
/// <para>
/// The binding targets <b>Open MPI's ABI</b> (the Debian and Ubuntu default: <c>apt-get install openmpi-bin
/// libopenmpi-dev</c>): it loads <c>libmpi.so.40</c> (or the file named by <see cref="LibraryEnvironmentVariable"/>) at
/// run time and reads Open MPI's predefined handles from its exported globals. MPICH, Intel MPI and MS-MPI are not
/// supported. Nothing is loaded until <see cref="Initialize"/> is called, so an application that references the package
/// but runs single-process needs no MPI installed.
/// </para>
/// <para>
/// Buffers are host memory; tensors on a GPU go through a host copy
/// (<see cref="CollectiveTensorExtensions"/>). MPI's default error handler applies: an MPI error ends every rank.
/// </para>
/// </remarks>
public sealed unsafe class MpiCollectives : ICollectives, IDisposable
{
    /// <summary>The environment variable that names Open MPI's library file when it is not found by its default name.</summary>
    public const string LibraryEnvironmentVariable = "HCSC_LIBMPI";

    /// <summary>Environment variables of which an MPI launcher sets at least one in every process it starts.</summary>
    private static readonly string[] LauncherVariables = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"];

    private static readonly object ProcessGate = new();
    private static MpiCollectives? s_current;
    private static bool s_finalized;

    private readonly object _gate = new();
    private readonly OpenMpiLibrary _mpi;
    private readonly bool _ownsInitialization;
    private readonly Dictionary<int, nint> _blockTypes = [];
    private bool _disposed;

    private MpiCollectives(OpenMpiLibrary mpi, bool ownsInitialization)
    {
        _mpi = mpi;
        _ownsInitialization = ownsInitialization;
        int rank, size;
        Check(_mpi.CommRank(_mpi.CommWorld, &rank), "MPI_Comm_rank");
        Check(_mpi.CommSize(_mpi.CommWorld, &size), "MPI_Comm_size");
        Rank = rank;
        Size = size;

        byte* version = stackalloc byte[4096];
        int length = 0;
        LibraryVersion = _mpi.GetLibraryVersion(version, &length) == 0
            ? Marshal.PtrToStringUTF8((nint)version, length).Trim().Split('\n')[0].TrimEnd(',')
            : "unknown";
    }

    /// <summary>
    /// Whether this process was started by an MPI launcher: Open MPI's <c>mpirun</c> (<c>OMPI_COMM_WORLD_SIZE</c>) or a
    /// PMIx / PMI launcher such as Slurm's <c>srun --mpi=pmix</c> (<c>PMIX_RANK</c>, <c>PMI_RANK</c>).
    /// </summary>
    public static bool IsLaunchedByMpi =>
        LauncherVariables.Any(v => !string.IsNullOrEmpty(Environment.GetEnvironmentVariable(v)));

    /// <summary>This process's rank in MPI_COMM_WORLD.</summary>
    public int Rank { get; }

    /// <summary>The number of processes in MPI_COMM_WORLD.</summary>
    public int Size { get; }

    /// <summary>The MPI library file that was loaded (as given or found, e.g. <c>libmpi.so.40</c>).</summary>
    public string LibraryPath => _mpi.Path;

    /// <summary>The first line of MPI_Get_library_version, e.g. <c>Open MPI v4.1.4, package: Debian OpenMPI, …</c>.</summary>
    public string LibraryVersion { get; }

    /// <summary>
    /// Loads Open MPI and initialises MPI (MPI_Init_thread, MPI_THREAD_SERIALIZED) unless the process already did; the
    /// instance finalises it on <see cref="Dispose"/> only if it initialised it.
    /// </summary>
    /// <param name="requireLauncher">
    /// When true (the default), refuse to start unless <see cref="IsLaunchedByMpi"/>: a process started without
    /// <c>mpirun</c> would silently form a world of one. False allows such a singleton (Size 1).
    /// </param>
    /// <param name="libraryPath">Open MPI's library file; null: <see cref="LibraryEnvironmentVariable"/>, else <c>libmpi.so.40</c>, <c>libmpi.so</c>.</param>
    /// <returns>The process's MPI group; dispose it when the program ends.</returns>
    /// <exception cref="InvalidOperationException">
    /// Not launched by an MPI launcher (with <paramref name="requireLauncher"/>), an instance is already alive, or MPI was
    /// finalised before in this process.
    /// </exception>
    /// <exception cref="DllNotFoundException">Open MPI's library cannot be loaded (the message says how to install it).</exception>
    /// <exception cref="NotSupportedException">The library found is not Open MPI.</exception>
    public static MpiCollectives Initialize(bool requireLauncher = true, string? libraryPath = null)
    {
        lock (ProcessGate)
        {
            if (s_current is not null)
            {
                throw new InvalidOperationException("MPI is already initialised by an MpiCollectives in this process: share that instance.");
            }

            if (s_finalized)
            {
                throw new InvalidOperationException("MPI was finalised in this process and cannot be initialised again (an MPI rule): keep one MpiCollectives for the whole program.");
            }

            if (requireLauncher && !IsLaunchedByMpi)
            {
                throw new InvalidOperationException(
                    "Distributed MPI needs the processes to be started by an MPI launcher, e.g. " +
                    "`mpirun -np 2 dotnet hcsc-pretrain.dll pretrain --distributed mpi …` (add --oversubscribe for more ranks than cores, " +
                    "--allow-run-as-root as root) or under Slurm `srun --mpi=pmix …`; this process has none of " +
                    $"{string.Join(", ", LauncherVariables)} set.");
            }

            var mpi = OpenMpiLibrary.Load(libraryPath);
            int initialized = 0;
            Check(mpi, mpi.Initialized(&initialized), "MPI_Initialized");
            bool owns = false;
            if (initialized == 0)
            {
                int finalized = 0;
                Check(mpi, mpi.Finalized(&finalized), "MPI_Finalized");
                if (finalized != 0)
                {
                    throw new InvalidOperationException("MPI was finalised in this process and cannot be initialised again (an MPI rule).");
                }

                int provided = 0;
                Check(mpi, mpi.InitThread(null, null, OpenMpiLibrary.ThreadSerialized, &provided), "MPI_Init_thread");
                owns = true;
            }

            s_current = new MpiCollectives(mpi, owns);
            return s_current;
        }
    }

    /// <summary>Sums over the ranks in place (MPI_Allreduce with MPI_IN_PLACE, MPI_FLOAT, MPI_SUM).</summary>
    /// <param name="values">This rank's values; overwritten with the sums. The same length on every rank.</param>
    public void AllReduceSum(Span<float> values)
    {
        fixed (float* p = values)
        {
            Reduce(p, values.Length, _mpi.Float);
        }
    }

    /// <summary>Sums over the ranks in place (MPI_Allreduce with MPI_IN_PLACE, MPI_DOUBLE, MPI_SUM).</summary>
    /// <param name="values">This rank's values; overwritten with the sums. The same length on every rank.</param>
    public void AllReduceSum(Span<double> values)
    {
        fixed (double* p = values)
        {
            Reduce(p, values.Length, _mpi.Double);
        }
    }

    /// <summary>Sums over the ranks in place (MPI_Allreduce with MPI_IN_PLACE, MPI_INT64_T, MPI_SUM).</summary>
    /// <param name="values">This rank's values; overwritten with the sums. The same length on every rank.</param>
    public void AllReduceSum(Span<long> values)
    {
        fixed (long* p = values)
        {
            Reduce(p, values.Length, _mpi.Int64);
        }
    }

    /// <summary>Gathers equal-length blocks in rank order (MPI_Allgather); see <see cref="ICollectives.AllGather{T}"/>.</summary>
    /// <typeparam name="T">An unmanaged element type with the same layout on every rank.</typeparam>
    /// <param name="local">This rank's block (length n, the same on every rank).</param>
    /// <param name="gathered">Receives the blocks; length <see cref="Size"/> · n, not overlapping <paramref name="local"/>.</param>
    /// <exception cref="ArgumentException">The lengths do not fit.</exception>
    public void AllGather<T>(ReadOnlySpan<T> local, Span<T> gathered)
        where T : unmanaged
    {
        if (gathered.Length != (long)local.Length * Size)
        {
            throw new ArgumentException(
                $"AllGather needs Size · n = {Size} · {local.Length} = {(long)local.Length * Size} elements to receive into; got {gathered.Length}.",
                nameof(gathered));
        }

        lock (_gate)
        {
            ThrowIfDisposed();
            nint type = BlockType(sizeof(T));
            fixed (T* send = local)
            fixed (T* receive = gathered)
            {
                Check(_mpi.Allgather(send, local.Length, type, receive, local.Length, type, _mpi.CommWorld), "MPI_Allgather");
            }
        }
    }

    /// <summary>Gathers blocks of any length in rank order (MPI_Allgather of the lengths, then MPI_Allgatherv).</summary>
    /// <typeparam name="T">An unmanaged element type with the same layout on every rank.</typeparam>
    /// <param name="local">This rank's block, of any length.</param>
    /// <param name="counts">Receives every rank's block length.</param>
    /// <returns>The concatenation of the blocks in rank order.</returns>
    /// <exception cref="ArgumentException">The total length exceeds <see cref="int.MaxValue"/> (thrown on every rank).</exception>
    public T[] AllGatherVariable<T>(ReadOnlySpan<T> local, out int[] counts)
        where T : unmanaged
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            counts = new int[Size];
            int length = local.Length;
            fixed (int* all = counts)
            {
                Check(_mpi.Allgather(&length, 1, _mpi.Int, all, 1, _mpi.Int, _mpi.CommWorld), "MPI_Allgather");
            }

            long total = counts.Sum(c => (long)c);
            if (total > int.MaxValue)
            {
                throw new ArgumentException($"AllGatherVariable would gather {total} elements; at most {int.MaxValue} per call.", nameof(local));
            }

            var displacements = new int[Size];
            for (int r = 1; r < Size; r++)
            {
                displacements[r] = displacements[r - 1] + counts[r - 1];
            }

            var result = new T[total];
            nint type = BlockType(sizeof(T));
            fixed (T* send = local)
            fixed (T* receive = result)
            fixed (int* c = counts)
            fixed (int* d = displacements)
            {
                Check(_mpi.Allgatherv(send, length, type, receive, c, d, type, _mpi.CommWorld), "MPI_Allgatherv");
            }

            return result;
        }
    }

    /// <summary>Copies the root's buffer to every rank (MPI_Bcast).</summary>
    /// <typeparam name="T">An unmanaged element type with the same layout on every rank.</typeparam>
    /// <param name="buffer">Sent from the root, received elsewhere; the same length on every rank.</param>
    /// <param name="root">The sending rank, in [0, <see cref="Size"/>).</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="root"/> is not a rank.</exception>
    public void Broadcast<T>(Span<T> buffer, int root)
        where T : unmanaged
    {
        if ((uint)root >= (uint)Size)
        {
            throw new ArgumentOutOfRangeException(nameof(root), root, $"The root must be a rank of the group, in [0, {Size}).");
        }

        lock (_gate)
        {
            ThrowIfDisposed();
            nint type = BlockType(sizeof(T));
            fixed (T* p = buffer)
            {
                Check(_mpi.Bcast(p, buffer.Length, type, root, _mpi.CommWorld), "MPI_Bcast");
            }
        }
    }

    /// <summary>Waits for every rank (MPI_Barrier).</summary>
    public void Barrier()
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            Check(_mpi.Barrier(_mpi.CommWorld), "MPI_Barrier");
        }
    }

    /// <summary>
    /// Ends every rank of MPI_COMM_WORLD with <paramref name="errorCode"/> (MPI_Abort): what a rank that failed calls so
    /// that the others do not wait for it in a collective forever. Does not return.
    /// </summary>
    /// <param name="errorCode">The exit status the launcher reports.</param>
    public void Abort(int errorCode)
    {
        _mpi.Abort(_mpi.CommWorld, errorCode);
        Environment.Exit(errorCode);
    }

    /// <summary>
    /// Finalises MPI (MPI_Finalize) if this instance initialised it; the instance cannot be used afterwards. Collective:
    /// every rank disposes its instance. Later calls do nothing.
    /// </summary>
    public void Dispose()
    {
        lock (ProcessGate)
        {
            lock (_gate)
            {
                if (_disposed)
                {
                    return;
                }

                _disposed = true;
                foreach (nint type in _blockTypes.Values)
                {
                    nint t = type;
                    _mpi.TypeFree(&t);
                }

                _blockTypes.Clear();
                if (_ownsInitialization)
                {
                    int finalized = 0;
                    _mpi.Finalized(&finalized);
                    if (finalized == 0)
                    {
                        Check(_mpi.Finalize(), "MPI_Finalize");
                    }

                    s_finalized = true;
                }

                s_current = null;
            }
        }
    }

    private static void Check(OpenMpiLibrary mpi, int code, string function)
    {
        if (code != 0)
        {
            throw new InvalidOperationException($"{function} failed: {mpi.ErrorString(code)} (MPI error {code}).");
        }
    }

    private void Check(int code, string function) => Check(_mpi, code, function);

    private void Reduce(void* values, int count, nint type)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            Check(_mpi.Allreduce(OpenMpiLibrary.InPlace, values, count, type, _mpi.Sum, _mpi.CommWorld), "MPI_Allreduce");
        }
    }

    /// <summary>MPI_BYTE for 1-byte elements, else a committed contiguous type of <paramref name="bytes"/> bytes (kept until Dispose).</summary>
    private nint BlockType(int bytes)
    {
        if (bytes == 1)
        {
            return _mpi.Byte;
        }

        if (!_blockTypes.TryGetValue(bytes, out nint type))
        {
            Check(_mpi.TypeContiguous(bytes, _mpi.Byte, &type), "MPI_Type_contiguous");
            Check(_mpi.TypeCommit(&type), "MPI_Type_commit");
            _blockTypes[bytes] = type;
        }

        return type;
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);
}
