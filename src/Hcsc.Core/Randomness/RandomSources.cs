using TorchSharp;

namespace Hcsc.Core.Randomness;

/// <summary>
/// The random sources of one run, all derived from one seed: torch's global generators (CPU and
/// CUDA), an explicit <see cref="torch.Generator"/> for sampling that must be reproducible, and a
/// managed <see cref="System.Random"/> for data order and augmentation decisions.
/// </summary>
public sealed class RandomSources : IDisposable
{
    private RandomSources(long seed, torch.Generator generator, Random managed)
    {
        Seed = seed;
        Generator = generator;
        Managed = managed;
    }

    /// <summary>The seed everything was derived from.</summary>
    public long Seed { get; }

    /// <summary>A CPU torch generator seeded with <see cref="Seed"/>; pass it to sampling calls.</summary>
    public torch.Generator Generator { get; }

    /// <summary>A managed generator seeded from <see cref="Seed"/>.</summary>
    public Random Managed { get; }

    /// <summary>
    /// Seeds torch's global CPU generator (and every CUDA device's when CUDA is available) with
    /// <paramref name="seed"/>, and returns a fresh explicit torch generator and managed generator.
    /// Calling it twice with the same seed reproduces the same draws.
    /// </summary>
    public static RandomSources SeedEverything(long seed)
    {
        torch.random.manual_seed(seed);
        if (torch.cuda.is_available())
        {
            torch.cuda.manual_seed_all(seed);
        }

        var generator = new torch.Generator(unchecked((ulong)seed));
        var managed = new Random(unchecked((int)(seed ^ (seed >> 32))));
        return new RandomSources(seed, generator, managed);
    }

    /// <inheritdoc />
    public void Dispose() => Generator.Dispose();
}
