using System.Diagnostics;
using System.Globalization;
using Hcsc.Models.Backbones;
using Hcsc.Models.Momentum;
using Hcsc.Models.Optimization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Hcsc.Benchmarks.Models;

/// <summary>
/// The optimiser step alone on a ResNet's parameters with fixed gradients: <see cref="ExplicitScalarSgd"/> over packed
/// parameters (what training uses: <see cref="FlatParameters"/>), the same over the loose parameters, and TorchSharp's
/// <see cref="SGD"/> (the baseline), in rotating order so all see the same machine load; momentum 0.9, weight decay
/// 1e-4, as in pretraining. Also the key encoder's EMA update, loose against packed.
/// </summary>
public sealed class OptimizerStepBenchmark : IBenchmark
{
    /// <inheritdoc />
    public string Name => "optimizer-step";

    /// <inheritdoc />
    public string Description => "ExplicitScalarSgd.step packed vs loose vs TorchSharp SGD.step, and the EMA packed vs loose, on ResNet-50 (or --arch) parameters; median ms";

    /// <inheritdoc />
    public int Run(string[] args)
    {
        string arch = args.Length >= 2 && args[0] == "--arch" ? args[1] : "resnet50";
        const int steps = 30;
        using var loose = ResNet.Create(new ResNetOptions { Arch = arch });
        using var packed = ResNet.Create(new ResNetOptions { Arch = arch });
        using var theirs = ResNet.Create(new ResNetOptions { Arch = arch });
        using var generator = new Generator(0);
        foreach (var model in new[] { loose, packed, theirs })
        {
            using var noGrad = no_grad();
            foreach (var parameter in model.parameters())
            {
                parameter.grad = randn(parameter.shape, generator: generator);
            }
        }

        using var flat = FlatParameters.Pack(packed.named_parameters(), packGradients: true);
        using (no_grad())
        {
            flat.Gradients!.normal_(generator: generator);
        }

        long count = loose.parameters().Sum(p => p.numel());
        using var looseSgd = new ExplicitScalarSgd(loose.parameters(), 0.03, momentum: 0.9, weightDecay: 1e-4);
        using var packedSgd = new ExplicitScalarSgd(flat, 0.03, momentum: 0.9, weightDecay: 1e-4);
        using var torchSharpSgd = torch.optim.SGD(theirs.parameters(), 0.03, momentum: 0.9, weight_decay: 1e-4);
        using var emaTarget = ResNet.Create(new ResNetOptions { Arch = arch });
        using var emaFlatTarget = FlatParameters.Pack(emaTarget.named_parameters(), packGradients: false);
        var contenders = new (string Name, Action Step)[]
        {
            ("ExplicitScalarSgd.step, packed", () => packedSgd.step()),
            ("ExplicitScalarSgd.step, loose", () => looseSgd.step()),
            ("TorchSharp SGD.step", () => torchSharpSgd.step()),
            ("EMA update, packed", () => MomentumUpdate.Apply(flat, emaFlatTarget, 0.999)),
            ("EMA update, loose", () => MomentumUpdate.Apply(loose, theirs, 0.999)),
        };
        foreach (var contender in contenders)
        {
            contender.Step();
        }

        var times = contenders.Select(_ => new List<double>()).ToArray();
        for (int i = 0; i < steps; i++)
        {
            // The order rotates, so no contender always finds another's data in the cache.
            for (int j = 0; j < contenders.Length; j++)
            {
                int c = (i + j) % contenders.Length;
                var clock = Stopwatch.StartNew();
                contenders[c].Step();
                times[c].Add(clock.Elapsed.TotalMilliseconds);
            }
        }

        var medians = times.Select(Statistics.Median).ToArray();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{arch}, {count / 1e6:F1} M parameters, {get_num_threads()} threads, median of {steps} rotating steps:"));
        for (int c = 0; c < contenders.Length; c++)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {contenders[c].Name,-32} {medians[c],8:F2} ms"));
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  SGD ratio packed / loose        {medians[0] / medians[1]:F3}"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  SGD ratio loose / TorchSharp    {medians[1] / medians[2]:F3}"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  EMA ratio packed / loose        {medians[3] / medians[4]:F3}"));
        return 0;
    }
}
