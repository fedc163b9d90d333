namespace Hcsc.Runtime;

/// <summary>What <see cref="NnpackGuard.Apply"/> found and did in this process.</summary>
/// <param name="ConvolutionsMayUseNnpack">True when libtorch's NNPACK switch is left on (NNPACK initialised, or the switch was not found).</param>
/// <param name="Reason">Why, in one sentence.</param>
public sealed record NnpackDecision(bool ConvolutionsMayUseNnpack, string Reason);

/// <summary>
/// Turns libtorch's NNPACK switch off where NNPACK cannot initialise on this CPU. libtorch then never uses NNPACK, but
/// it asks again before every convolution of a float32 batch of 16 or more that oneDNN does not take, and logs
/// "Could not initialize NNPACK! Reason: Unsupported hardware." each time: tens of thousands of lines on standard error
/// in one training run on a CPU that reports no caches (where <see cref="OneDnnGuard"/> keeps oneDNN off).
/// With the switch off libtorch stops asking; the convolutions and their results are the same.
/// </summary>
/// <remarks>Hcsc's models call <see cref="Apply"/> when they are built. Asking libtorch whether NNPACK initialises logs that line once.</remarks>
public static class NnpackGuard
{
    private static readonly ProcessDecision<NnpackDecision> Decision = new();

    /// <summary>The decision applied in this process, or null before the first <see cref="Apply"/>.</summary>
    public static NnpackDecision? Applied => Decision.Applied;

    /// <summary>Asks libtorch once per process whether NNPACK initialises, and turns its switch off if not.</summary>
    public static NnpackDecision Apply() => Decision.GetOrApply(() =>
    {
        if (!LibTorchContextFlag.Nnpack.IsAvailable || !LibTorchNnpack.CanAsk)
        {
            return new NnpackDecision(true, "libtorch's NNPACK switch was not found; NNPACK is left as libtorch decides");
        }

        if (LibTorchNnpack.Initialises())
        {
            return new NnpackDecision(true, "NNPACK initialises on this CPU");
        }

        LibTorchContextFlag.Nnpack.Enabled = false;
        return new NnpackDecision(false, "NNPACK cannot initialise on this CPU; its switch is off so that libtorch stops retrying and logging before every convolution");
    });

    private static unsafe class LibTorchNnpack
    {
        // at::native::_nnpack_available(): initialises NNPACK on the first call, and logs the failure on every call.
        private static readonly IntPtr Available = LibTorchCpuLibrary.Find("_ZN2at6native17_nnpack_availableEv", "?_nnpack_available@native@at@@YA_NXZ");

        public static bool CanAsk => Available != IntPtr.Zero;

        public static bool Initialises() => ((delegate* unmanaged<byte>)Available)() != 0;
    }
}
