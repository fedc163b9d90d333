namespace Hcsc.Runtime;

/// <summary>What <see cref="OneDnnGuard.Apply"/> decided for this process.</summary>
/// <param name="ConvolutionsUseOneDnn">True when libtorch's CPU convolutions run on oneDNN.</param>
/// <param name="Reason">Why, in one sentence (printed by the sample at start-up when oneDNN is off).</param>
public sealed record OneDnnDecision(bool ConvolutionsUseOneDnn, string Reason);

/// <summary>
/// Keeps libtorch's CPU convolutions off oneDNN where oneDNN 3.7 is known to fail: on a CPU whose CPUID describes
/// no usable caches (see <see cref="CpuCacheReport"/>), where it computes wrong gradients or dies with SIGFPE.
/// ATen's own convolution kernels are used there instead (slower; the models benchmark measures by how much).
/// </summary>
/// <remarks>
/// Hcsc's models call <see cref="Apply"/> when they are built, so a user of <c>Hcsc.Models</c> is covered; code that
/// builds its own convolutions can call it first. The environment variable <c>HCSC_ONEDNN</c> overrides the
/// decision: <c>auto</c> (default), <c>on</c> (keep oneDNN whatever the CPU reports) or <c>off</c> (never use it).
/// </remarks>
public static class OneDnnGuard
{
    /// <summary>The environment variable that overrides the automatic decision: <c>auto</c>, <c>on</c> or <c>off</c>.</summary>
    public const string EnvironmentVariable = "HCSC_ONEDNN";

    private static readonly ProcessDecision<OneDnnDecision> Decision = new();

    /// <summary>The decision applied in this process, or null before the first <see cref="Apply"/>.</summary>
    public static OneDnnDecision? Applied => Decision.Applied;

    /// <summary>
    /// Decides once per process (later calls return the first decision) and sets libtorch's flag accordingly.
    /// </summary>
    /// <exception cref="ArgumentException"><c>HCSC_ONEDNN</c> holds something other than auto, on or off.</exception>
    public static OneDnnDecision Apply() => Decision.GetOrApply(() =>
    {
        var decision = Decide(Environment.GetEnvironmentVariable(EnvironmentVariable), CpuCacheReport.ForThisMachine());
        if (!decision.ConvolutionsUseOneDnn)
        {
            if (!LibTorchContextFlag.Mkldnn.IsAvailable)
            {
                decision = decision with
                {
                    ConvolutionsUseOneDnn = true,
                    Reason = decision.Reason + "; but libtorch's switch was not found, so oneDNN stays on: expect failures in convolutions",
                };
            }
            else
            {
                LibTorchContextFlag.Mkldnn.Enabled = false;
            }
        }

        return decision;
    });

    /// <summary>
    /// The decision for a setting of <c>HCSC_ONEDNN</c> (null or empty = auto) on a CPU described by <paramref name="cpu"/>.
    /// Pure: sets nothing.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="setting"/> is not auto, on or off.</exception>
    public static OneDnnDecision Decide(string? setting, CpuCacheReport cpu)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        switch (string.IsNullOrWhiteSpace(setting) ? "auto" : setting.Trim().ToLowerInvariant())
        {
            case "on":
                return new OneDnnDecision(true, $"{EnvironmentVariable}=on");
            case "off":
                return new OneDnnDecision(false, $"{EnvironmentVariable}=off");
            case "auto":
                return cpu.Problem is { } problem
                    ? new OneDnnDecision(false, $"oneDNN convolutions are off: {problem}. ATen's convolutions are used instead (slower); set {EnvironmentVariable}=on to override")
                    : new OneDnnDecision(true, "the CPU reports usable cache sizes");
            default:
                throw new ArgumentException($"{EnvironmentVariable}='{setting}' is not understood. Use auto (default), on or off.", nameof(setting));
        }
    }

    /// <summary>
    /// Sets libtorch's oneDNN flag directly (for benchmarks and tests that compare both paths); <see cref="Apply"/>'s
    /// decision is not changed.
    /// </summary>
    /// <exception cref="PlatformNotSupportedException">libtorch's switch is not exported by the loaded library.</exception>
    public static void SetConvolutionsUseOneDnn(bool enabled) => LibTorchContextFlag.Mkldnn.Enabled = enabled;

    /// <summary>libtorch's current oneDNN flag.</summary>
    /// <exception cref="PlatformNotSupportedException">libtorch's switch is not exported by the loaded library.</exception>
    public static bool ConvolutionsUseOneDnn => LibTorchContextFlag.Mkldnn.Enabled;
}
