using System.Runtime.InteropServices;

namespace Hcsc.Runtime;

/// <summary>What <see cref="NativeHeap.Apply"/> decided for this process.</summary>
/// <param name="KeepsFreedMemory">True when glibc's malloc was told to serve large blocks from its heap and keep freed memory for reuse.</param>
/// <param name="Reason">Why, in one sentence.</param>
public sealed record NativeHeapDecision(bool KeepsFreedMemory, string Reason);

/// <summary>
/// Makes glibc's malloc reuse the memory of libtorch's large temporary buffers instead of returning it to the kernel
/// after every operation. By default glibc serves a block above 32 MiB (and, until it has freed one, above 128 KiB) with
/// its own <c>mmap</c> and unmaps it on <c>free</c>, so the next operation faults every page in again, zero-filled:
/// ATen's im2col convolutions allocate a <c>[B, C·k·k, H·W]</c> column buffer per call (58 MiB for 16 channels at 28×28,
/// batch 128), and a CPU training step spends more time in the kernel than computing (figures in
/// <c>benchmarks/README.md</c>, "glibc's malloc keeps freed buffers").
/// </summary>
/// <remarks>
/// <see cref="Apply"/> sets <c>mallopt(M_MMAP_MAX, 0)</c> (blocks come from the heaps; glibc still maps a block of its
/// own when a thread other than the main one asks for more than its 64 MiB thread heap holds) and <c>mallopt(M_TRIM_THRESHOLD, 2 GiB − 1)</c> (freed memory stays in
/// the heap). The cost is resident memory: the process keeps the peak of what it allocated (about +0.3 GiB for a
/// small ResNet-18 step). Hcsc's models call it when they are built. Nothing is changed where the C library is not
/// glibc, where <c>GLIBC_TUNABLES</c> already sets a <c>glibc.malloc</c> tunable (the user's choice wins), or where the
/// environment variable <c>HCSC_MALLOC</c> is <c>off</c>.
/// </remarks>
public static class NativeHeap
{
    /// <summary>The environment variable that turns the tuning off: <c>auto</c> (default) or <c>off</c>.</summary>
    public const string EnvironmentVariable = "HCSC_MALLOC";

    private const int MallocTrimThreshold = -1; // M_TRIM_THRESHOLD in glibc's malloc.h
    private const int MallocMmapMax = -4;       // M_MMAP_MAX

    private static readonly ProcessDecision<NativeHeapDecision> Decision = new();

    /// <summary>The decision applied in this process, or null before the first <see cref="Apply"/>.</summary>
    public static NativeHeapDecision? Applied => Decision.Applied;

    /// <summary>Decides once per process (later calls return the first decision) and tunes glibc's malloc accordingly.</summary>
    /// <exception cref="ArgumentException"><c>HCSC_MALLOC</c> holds something other than auto or off.</exception>
    public static NativeHeapDecision Apply() => Decision.GetOrApply(() =>
    {
        var mallopt = FindMallopt();
        var decision = Decide(Environment.GetEnvironmentVariable(EnvironmentVariable), mallopt is not null, Environment.GetEnvironmentVariable("GLIBC_TUNABLES"));
        return decision.KeepsFreedMemory && !Tune(mallopt!.Value)
            ? new NativeHeapDecision(false, "glibc's mallopt refused the settings; malloc is left as it was")
            : decision;
    });

    /// <summary>
    /// The decision for a setting of <c>HCSC_MALLOC</c> (null or empty = auto), whether glibc's <c>mallopt</c> is
    /// present, and the process's <c>GLIBC_TUNABLES</c>. Pure: sets nothing.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="setting"/> is not auto or off.</exception>
    public static NativeHeapDecision Decide(string? setting, bool glibcPresent, string? glibcTunables)
    {
        switch (string.IsNullOrWhiteSpace(setting) ? "auto" : setting.Trim().ToLowerInvariant())
        {
            case "off":
                return new NativeHeapDecision(false, $"{EnvironmentVariable}=off");
            case "auto":
                if (!glibcPresent)
                {
                    return new NativeHeapDecision(false, "the C library is not glibc");
                }

                return glibcTunables?.Contains("glibc.malloc.", StringComparison.Ordinal) == true
                    ? new NativeHeapDecision(false, "GLIBC_TUNABLES sets malloc's tunables; they are left as given")
                    : new NativeHeapDecision(true, "glibc's malloc keeps freed memory for reuse (no per-block mmap, no trimming)");
            default:
                throw new ArgumentException($"{EnvironmentVariable}='{setting}' is not understood. Use auto (default) or off.", nameof(setting));
        }
    }

    private static unsafe bool Tune(IntPtr mallopt)
    {
        var set = (delegate* unmanaged<int, int, int>)mallopt;
        return set(MallocMmapMax, 0) == 1 && set(MallocTrimThreshold, int.MaxValue) == 1;
    }

    private static IntPtr? FindMallopt()
    {
        if (!OperatingSystem.IsLinux() || !NativeLibrary.TryLoad("libc.so.6", out var libc))
        {
            return null;
        }

        // gnu_get_libc_version exists only in glibc: musl and others are left alone.
        return NativeLibrary.TryGetExport(libc, "gnu_get_libc_version", out _) && NativeLibrary.TryGetExport(libc, "mallopt", out var mallopt)
            ? mallopt
            : null;
    }
}
