using System.Text.RegularExpressions;

namespace Hcsc.Tests.Build;

/// <summary>
/// TorchSharp's <c>Generator</c> is always a CPU generator, whatever device it names, and libtorch refuses it for a
/// CUDA tensor: a sampling call on the device that is handed one crashes on the first GPU step that reaches it (issue
/// 26, finding 1), which no CPU test sees. This guard reads the library's and the sample's sources and fails on every
/// place where a generator meets a device that is not provably the CPU. Draws on a tensor's device go through
/// <c>Hcsc.Core.Randomness.DeviceRandom</c>.
/// </summary>
public partial class GeneratorDeviceGuardTests
{
    [Fact]
    public void No_generator_is_handed_to_a_sampler_whose_device_is_not_provably_the_cpu()
    {
        string root = ScalarTemporaryGuardTests.RepoRoot();
        var sources = new[] { "src", "samples" }
            .SelectMany(folder => Directory.EnumerateFiles(Path.Combine(root, folder), "*.cs", SearchOption.AllDirectories))
            .Where(path => !path.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
                && !path.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .ToList();
        sources.Should().HaveCountGreaterThan(50, "the guard must read the real sources");

        var found = sources.SelectMany(path => Violations(File.ReadAllText(path)).Select(v => $"{Path.GetRelativePath(root, path)}: {v}")).ToList();
        found.Should().BeEmpty("a TorchSharp Generator is a CPU generator; draw on the device through DeviceRandom");
    }

    [Theory]
    [InlineData("var g = new Generator(7, device);", true)]
    [InlineData("var g = new Generator(seed + 1, embeddings.device);", true)]
    [InlineData("var g = new Generator(7, CPU);", false)]
    [InlineData("var g = new Generator(unchecked((ulong)seed));", false)]
    [InlineData("var u = rand(shape, dtype: t.dtype, device: t.device, generator: g);", true)]
    [InlineData("var u = rand(shape, dtype: t.dtype, device: CPU, generator: g);", false)]
    [InlineData("var u = randperm(n, generator: g).to(device);", false)]
    [InlineData("w.normal_(0, 0.01, generator: g);", true)]
    [InlineData("var m = bernoulli(p, generator: g);", true)]
    [InlineData("var m = torch.multinomial(p, 3, generator: g);", true)]
    [InlineData("var x = randn_like(y, generator: g);", true)]
    [InlineData("var x = randn(new long[] { 3, 4 },\n    device: cuda,\n    generator: g);", true)]
    public void The_guard_tells_a_device_sampler_from_a_cpu_one(string source, bool violates) =>
        Violations(source).Should().HaveCount(violates ? 1 : 0, source);

    /// <summary>Each statement of <paramref name="source"/> that hands a generator to a device that may not be the CPU.</summary>
    internal static IEnumerable<string> Violations(string source)
    {
        foreach (var statement in source.Split(';').Select(s => Regex.Replace(s, @"\s+", " ").Trim()))
        {
            if (DeviceGenerator().IsMatch(statement))
            {
                yield return $"a Generator made for a device: {statement}";
            }
            else if (statement.Contains("generator:", StringComparison.Ordinal) && !IsProvablyCpu(statement))
            {
                yield return $"a generator handed to a sampler off the CPU: {statement}";
            }
        }
    }

    // A factory that takes no device argument (rand, randn, randint, randperm, normal) makes a CPU tensor; one with
    // `device: CPU` too. In-place samplers, _like factories, bernoulli and multinomial follow their input's device.
    private static bool IsProvablyCpu(string statement) =>
        !InputDeviceSampler().IsMatch(statement)
        && DeviceArgument().Matches(statement).All(m => m.Groups[1].Value is "CPU" or "torch.CPU");

    [GeneratedRegex(@"new (torch\.)?Generator\([^()]*(\([^()]*\)[^()]*)*,(?!\s*(torch\.)?CPU\s*\))\s*[^,()]+\)")]
    private static partial Regex DeviceGenerator();

    [GeneratedRegex(@"\.(normal_|uniform_|bernoulli_|random_|exponential_|cauchy_|log_normal_|geometric_)\(|\b(bernoulli|multinomial|rand_like|randn_like|randint_like|poisson)\(")]
    private static partial Regex InputDeviceSampler();

    [GeneratedRegex(@"\bdevice: ([\w.]+)")]
    private static partial Regex DeviceArgument();
}
