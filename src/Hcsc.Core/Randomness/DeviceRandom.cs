using Hcsc.Core.Devices;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Core.Randomness;

/// <summary>
/// Random draws on any device from one CPU <see cref="Generator"/>, so a run keeps one reproducible random stream
/// (whose state a checkpoint can save) whatever device it trains on.
/// </summary>
/// <remarks>
/// TorchSharp's <see cref="Generator"/> is always a CPU generator, whatever device it was made for (its native
/// constructor makes a CPU generator and keeps the device only as a label), and libtorch refuses a CPU generator for a
/// CUDA tensor ("Expected a 'cuda' device type for generator"). So a sampling call on a CUDA tensor must not receive
/// it. Here the CPU generator stays the source: on the CPU the draws come from it directly (bit for bit what
/// <c>rand(…, generator)</c> gives); on CUDA one 64-bit seed drawn from it reseeds every CUDA device's default generator
/// (<c>torch.cuda.manual_seed_all</c>, a host call with no device sync) and the draws are made on the device from
/// that; on any other device they are drawn on the CPU and copied. Under <see cref="Options.KernelPath.Tensor"/>
/// (<see cref="KernelSelection"/>) a CPU draw takes the CUDA branch's steps: a seed drawn, then a generator seeded with it. The draws on CUDA therefore depend only on the CPU
/// generator's state, which is what checkpoints save and restore.
/// </remarks>
public static class DeviceRandom
{
    /// <summary>
    /// Uniform draws in [0, 1) of <paramref name="shape"/> and <paramref name="dtype"/> on <paramref name="device"/>,
    /// from the CPU <paramref name="generator"/> (directly on the CPU, through a seed drawn from it elsewhere).
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="generator"/> or <paramref name="device"/> is null.</exception>
    public static Tensor Uniform(long[] shape, ScalarType dtype, Device device, Generator generator)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(generator);
        switch (device.type)
        {
            case DeviceType.CPU when KernelSelection.HostKernelsAllowed:
                return rand(shape, dtype: dtype, device: CPU, generator: generator);
            case DeviceType.CPU:
                // KernelPath.Tensor: the CUDA branch's steps on the CPU (a seed drawn, then a stream seeded with it).
                using (var seeded = new Generator(DrawSeed(generator)))
                {
                    return rand(shape, dtype: dtype, device: CPU, generator: seeded);
                }

            case DeviceType.CUDA:
                ReseedCuda(generator);
                return rand(shape, dtype: dtype, device: device);
            default:
                using (var host = rand(shape, dtype: dtype, generator: generator))
                {
                    return host.to(device);
                }
        }
    }

    /// <summary>A 63-bit seed drawn from the CPU <paramref name="generator"/> (one draw, advancing its state).</summary>
    public static ulong DrawSeed(Generator generator)
    {
        ArgumentNullException.ThrowIfNull(generator);
        using var seed = randint(0, long.MaxValue, [1], ScalarType.Int64, device: CPU, generator: generator);
        return (ulong)seed.item<long>();
    }

    private static void ReseedCuda(Generator generator) => cuda.manual_seed_all(unchecked((long)DrawSeed(generator)));
}
