using TorchSharp;

namespace Hcsc.Runtime;

/// <summary>
/// libtorch's process-wide CUDA switches that decide speed, not results' meaning: cuDNN's algorithm search
/// (PyTorch: <c>torch.backends.cudnn.benchmark</c>) and TF32 tensor-core arithmetic for float32 matrix products and
/// convolutions (<c>torch.backends.cuda.matmul.allow_tf32</c>, <c>torch.backends.cudnn.allow_tf32</c>). Nothing changes
/// until <see cref="Apply"/> is called.
/// </summary>
public static class CudaSwitches
{
    /// <summary>
    /// Sets both switches. <paramref name="cudnnBenchmark"/>: cuDNN times its convolution algorithms for each new input
    /// shape and keeps the fastest (MoCo's reference turns it on; batches of one shape gain, results differ in the last
    /// bits from run to run). <paramref name="tf32"/>: float32 products on Ampere and newer GPUs round their inputs to
    /// 10-bit mantissas (about 2–8× faster, relative error ~1e-3 instead of ~1e-7).
    /// </summary>
    /// <returns>False when cuDNN's benchmark switch could not be reached in this libtorch (TF32 is set either way).</returns>
    public static bool Apply(bool cudnnBenchmark, bool tf32)
    {
        torch.backends.cuda.matmul.allow_tf32 = tf32;
        torch.backends.cudnn.allow_tf32 = tf32;
        if (!LibTorchContextFlag.CuDnnBenchmark.IsAvailable)
        {
            return false;
        }

        LibTorchContextFlag.CuDnnBenchmark.Enabled = cudnnBenchmark;
        return true;
    }

    /// <summary>cuDNN's benchmark switch now, or null when this libtorch does not expose it.</summary>
    public static bool? CudnnBenchmark => LibTorchContextFlag.CuDnnBenchmark.IsAvailable ? LibTorchContextFlag.CuDnnBenchmark.Enabled : null;

    /// <summary>Whether float32 matrix products may use TF32 now.</summary>
    public static bool Tf32 => torch.backends.cuda.matmul.allow_tf32;
}
