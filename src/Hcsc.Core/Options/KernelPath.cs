namespace Hcsc.Core.Options;

/// <summary>
/// Which code path computes the objective's cross-entropies, mask draws and selection tables
/// (<see cref="Devices.KernelSelection"/>).
/// </summary>
public enum KernelPath
{
    /// <summary>The C# SIMD kernels for tensors in host memory, tensor operations for the rest (the default).</summary>
    Auto,

    /// <summary>As <see cref="Auto"/>; a program may refuse it for a device other than the CPU.</summary>
    Host,

    /// <summary>
    /// Tensor operations everywhere, as on an accelerator, also for CPU tensors: the path a CUDA run takes, run on
    /// the CPU so that tests and CI exercise it.
    /// </summary>
    Tensor,
}
