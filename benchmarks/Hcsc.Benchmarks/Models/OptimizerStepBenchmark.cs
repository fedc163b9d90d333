using System.Diagnostics;
using System.Globalization;
using Hcsc.Models.Backbones;
using Hcsc.Models.Optimization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Hcsc.Benchmarks.Models;

/// <summary>
/// The optimiser step alone on a ResNet's parameters with fixed gradients: <see cref="ExplicitScalarSgd"/> (what
/// training uses) against TorchSharp's <see cref="SGD"/> (the baseline it replaced), alternating single steps so
/// both see the same machine load; momentum 0.9, weight decay 1e-4, as in pretraining.
/// </summary>
public sealed class OptimizerStepBenchmark : IBenchmark
{
    /// <inheritdoc />
    public string Name => "optimizer-step";

    /// <inheritdoc />
    public string Description => "ExplicitScalarSgd.step vs TorchSharp SGD.step on ResNet-50 (or --arch) parameters; median ms per step and ratio";

    /// <inheritdoc />
    public int Run(string[] args)
    {
        string arch = args.Length >= 2 && args[0] == "--arch" ? args[1] : "resnet50";
        const int steps = 30;
        using var ours = ResNet.Create(new ResNetOptions { Arch = arch });
        using var theirs = ResNet.Create(new ResNetOptions { Arch = arch });
        using var generator = new Generator(0);
        foreach (var model in new[] { ours, theirs })
        {
            using var noGrad = no_grad();
            foreach (var parameter in model.parameters())
            {
                parameter.grad = randn(parameter.shape, generator: generator);
            }
        }

        long count = ours.parameters().Sum(p => p.numel());
        using var explicitSgd = new ExplicitScalarSgd(ours.parameters(), 0.03, momentum: 0.9, weightDecay: 1e-4);
        using var torchSharpSgd = torch.optim.SGD(theirs.parameters(), 0.03, momentum: 0.9, weight_decay: 1e-4);
        explicitSgd.step();
        torchSharpSgd.step();
        var timesOurs = new List<double>();
        var timesTheirs = new List<double>();
        for (int i = 0; i < steps; i++)
        {
            // Which one goes first alternates too, so neither always finds the other's data in the cache.
            if (i % 2 == 0)
            {
                timesOurs.Add(Time(explicitSgd));
                timesTheirs.Add(Time(torchSharpSgd));
            }
            else
            {
                timesTheirs.Add(Time(torchSharpSgd));
                timesOurs.Add(Time(explicitSgd));
            }
        }

        double medianOurs = Statistics.Median(timesOurs), medianTheirs = Statistics.Median(timesTheirs);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{arch}, {count / 1e6:F1} M parameters, {get_num_threads()} threads, median of {steps} alternating steps:"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  ExplicitScalarSgd.step  {medianOurs,8:F2} ms"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  TorchSharp SGD.step     {medianTheirs,8:F2} ms"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  ratio (ours / TorchSharp) {medianOurs / medianTheirs:F3}"));
        return 0;
    }

    private static double Time(OptimizerHelper optimizer)
    {
        var clock = Stopwatch.StartNew();
        optimizer.step();
        return clock.Elapsed.TotalMilliseconds;
    }
}
