using Hcsc.Benchmarks;
using Hcsc.Runtime;

// Before any TorchSharp call (see OpenMpWaitPolicy); an OMP_WAIT_POLICY set by the caller wins.
OpenMpWaitPolicy.PreferPassive();
TorchRuntime.Prepare();

// Every comparison benchmark, by name. Usage: hcsc-bench --list | hcsc-bench NAME [options]
IBenchmark[] benchmarks =
[
    new Hcsc.Benchmarks.Clustering.KMeansVersusFaissBenchmark(),
    new Hcsc.Benchmarks.Losses.SelectionLossBenchmark(),
    new Hcsc.Benchmarks.Data.DataPipelineBenchmark(),
    new Hcsc.Benchmarks.Pipeline.TrainingThroughputBenchmark(),
    new Hcsc.Benchmarks.Models.TrainingStepBenchmark(),
    new Hcsc.Benchmarks.Models.TrainingStepParityBenchmark(),
    new Hcsc.Benchmarks.Models.OptimizerStepBenchmark(),
    new Hcsc.Benchmarks.Pipeline.DefaultRunSeedsBenchmark(),
    new Hcsc.Benchmarks.Pipeline.MemorySoakBenchmark(),
    new Hcsc.Benchmarks.Pipeline.EpochOverheadBenchmark(),
    new Hcsc.Benchmarks.Pipeline.MultiCropCostBenchmark(),
    new Hcsc.Benchmarks.Experiments.FashionMnistComparison(),
    new Hcsc.Benchmarks.Experiments.PixelBaselinesBenchmark(),
    new Hcsc.Benchmarks.Distributed.ScaleOutBenchmark(),
];

if (args.Length == 0 || args[0] is "--list" or "-h" or "--help")
{
    Console.WriteLine("Usage: dotnet run --project benchmarks/Hcsc.Benchmarks -c Release -- NAME [options]");
    Console.WriteLine(benchmarks.Length == 0 ? "No benchmarks are registered yet." : "Benchmarks:");
    foreach (var benchmark in benchmarks)
    {
        Console.WriteLine($"  {benchmark.Name,-24} {benchmark.Description}");
    }

    return 0;
}

var chosen = benchmarks.FirstOrDefault(b => b.Name == args[0]);
if (chosen is null)
{
    Console.Error.WriteLine($"Unknown benchmark '{args[0]}'. Run with --list to see them.");
    return 2;
}

return chosen.Run(args[1..]);
