namespace Hcsc.Runtime;

/// <summary>
/// The one call that adjusts libtorch for training in this process. Nothing in Hcsc changes a process-wide setting
/// unless the application calls this (or one of the guards it applies); call it once at startup, before building a
/// model:
/// <code>
/// var runtime = TorchRuntime.Prepare();   // then build models and train
/// </code>
/// It applies, each decided once per process and overridable by its environment variable:
/// <list type="bullet">
/// <item><see cref="OneDnnGuard"/>: on a CPU whose CPUID reports no caches (some KVM guests) oneDNN's convolutions give
/// wrong gradients; there they run without oneDNN (<c>HCSC_ONEDNN=auto|on|off</c>).</item>
/// <item><see cref="NativeHeap"/>: glibc's <c>malloc</c> keeps freed memory for the next step's buffers instead of
/// unmapping and faulting it in again every step (<c>HCSC_MALLOC=auto|off</c>).</item>
/// <item><see cref="NnpackGuard"/>: an NNPACK that cannot initialise on this CPU is reported once, not retried silently
/// before every convolution.</item>
/// </list>
/// <see cref="OpenMpWaitPolicy.PreferPassive"/> must run before any TorchSharp call and <see cref="CudaSwitches"/>
/// takes the run's options, so both stay separate calls.
/// </summary>
public static class TorchRuntime
{
    /// <summary>Applies the settings above (the first call decides; later calls return the same decisions).</summary>
    /// <exception cref="ArgumentException">One of the environment variables holds a value it does not accept.</exception>
    public static TorchRuntimeReport Prepare() => new(OneDnnGuard.Apply(), NativeHeap.Apply(), NnpackGuard.Apply());

    /// <summary>
    /// Null when it is safe to train convolutions in this process; otherwise what is wrong and what to do: this CPU
    /// reports no caches, oneDNN's convolutions would compute wrong gradients, and <see cref="Prepare"/> (or
    /// <see cref="OneDnnGuard.Apply"/>) has not been called.
    /// </summary>
    public static string? ConvolutionProblem() => ConvolutionProblem(CpuCacheReport.ForThisMachine(), prepared: OneDnnGuard.Applied is not null);

    /// <summary>The rule of <see cref="ConvolutionProblem()"/> for a CPU described by <paramref name="cpu"/>. Pure.</summary>
    /// <param name="cpu">The caches the CPU reports.</param>
    /// <param name="prepared">Whether the oneDNN decision was applied in this process.</param>
    public static string? ConvolutionProblem(CpuCacheReport cpu, bool prepared)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        if (prepared || cpu.Problem is not { } problem)
        {
            return null;
        }

        return $"{problem} oneDNN's convolutions compute wrong gradients on such a CPU. Call Hcsc.Runtime.TorchRuntime.Prepare() once at startup " +
            $"(it turns oneDNN off here), or set {OneDnnGuard.EnvironmentVariable}=on and call it to keep oneDNN anyway.";
    }
}
