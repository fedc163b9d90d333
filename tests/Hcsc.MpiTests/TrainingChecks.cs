using System.Diagnostics;
using System.Globalization;
using Hcsc.Core.Distributed;
using Hcsc.Models;
using Hcsc.Models.Backbones;
using Hcsc.Models.Distributed;
using Hcsc.Models.Normalization;
using Hcsc.Samples.ImageNetPretrain.Augmentation;
using Hcsc.Samples.ImageNetPretrain.Commands;
using Hcsc.Samples.ImageNetPretrain.Data;
using Hcsc.Samples.ImageNetPretrain.Evaluation;
using Hcsc.Samples.ImageNetPretrain.Training;
using Hcsc.Tests;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.MpiTests;

/// <summary>
/// Data-parallel pretraining (issue 15, phase 2b) against one process. (1) The sample's whole training loop
/// (<see cref="PretrainRun"/>: 4 MoCo warm-up steps of a small-stem ResNet-18 of width 8 on 64 synthetic 16 px images,
/// global batch 16, queue 64) run by every rank alone with batch 16 and then by the n ranks together with 16 / n each:
/// the per-step losses and the final weights and buffers agree within 1e-5 relative. Batch norm is made equivalent: the
/// single-process reference uses <see cref="SplitBatchNorm2d"/> with n splits in both encoders (split j = rows
/// n mod n = j, which is rank j's strided shard), the ranks plain batch norm on their shards; the key batch is not
/// shuffled (Model:BatchNormSplits 1). (2) MoCo's shuffle BN over the ranks on its own: the key encoder of one process with
/// n batch-norm splits (its key batch shuffled in the process) and of n ranks with one split each (the key batch shuffled
/// over the ranks, <see cref="HcscModel.ForwardDataParallel"/>) give the same keys and running statistics.
/// </summary>
internal sealed class TrainingChecks(ICollectives group, Action<bool, string, string> check)
{
    // A width-8 ResNet-18 on 16-px images: forward reductions of up to 3×3×64 products over 20 layers, O(1) activations;
    // the gradients' longest sums (16 images × 16×16 positions = 4 096 products) stay below 20 × (576 + 16). The ranks
    // sum in another order than one process, so their results differ by float32 rounding within this bound.
    private static readonly double Tolerance = FloatBounds.Network(9 * 64, 20, 1);
    private const int GlobalBatch = 16;

    private readonly int _rank = group.Rank;
    private readonly int _size = group.Size;

    public void Run()
    {
        string root = SharedTemporaryFolder();
        try
        {
            WholeRunMatchesOneProcess(root);
            ShuffledKeyBatchNormMatchesOneProcess();
            ShardedKnnMatchesOneProcess();
        }
        finally
        {
            group.Barrier();
            if (_rank == 0)
            {
                Directory.Delete(root, recursive: true);
            }
        }
    }

    private void WholeRunMatchesOneProcess(string root)
    {
        var single = Train(Path.Combine(root, $"single-rank{_rank}"), SingleProcessCollectives.Instance, channels => new SplitBatchNorm2d(channels, _size));
        group.Barrier();
        var parallel = Train(Path.Combine(root, "parallel"), group, normLayer: null);

        double lossDifference = single.Losses.Count == parallel.Losses.Count && single.Losses.Count > 0
            ? single.Losses.Zip(parallel.Losses).Max(p => Math.Abs(p.First - p.Second) / Math.Max(Math.Abs(p.First), 1e-12))
            : double.PositiveInfinity;
        check(lossDifference <= Tolerance, $"data-parallel pretrain: {parallel.Losses.Count} step losses = one process's (max relative difference {lossDifference:G3})",
            $"single {Show(single.Losses)}, {_size} ranks {Show(parallel.Losses)}");

        double weightDifference = 0;
        string worst = "";
        bool sameNames = single.Weights.Count == parallel.Weights.Count && single.Weights.Keys.All(parallel.Weights.ContainsKey);

        // A tensor is judged against its own size or against the largest change training made to any tensor after its
        // first step, whichever is larger: a tensor that training moved only a little from zero (a BN bias) holds the
        // sum of gradients that cancel, whose float32 rounding is a larger share of the tiny value than of the update.
        double updateScale = single.Weights.Max(w => single.WeightsAfterFirstStep.TryGetValue(w.Key, out var first)
            ? w.Value.Zip(first).Max(p => Math.Abs(p.First - p.Second)) : 0);
        foreach (var (name, expected) in single.Weights)
        {
            if (!parallel.Weights.TryGetValue(name, out var actual) || actual.Length != expected.Length)
            {
                sameNames = false;
                continue;
            }

            double scale = Math.Max(Math.Max(expected.Max(v => Math.Abs(v)), updateScale), 1e-12);
            double difference = expected.Zip(actual).Max(p => Math.Abs(p.First - p.Second)) / scale;
            if (difference > weightDifference)
            {
                (weightDifference, worst) = (difference, name);
            }
        }

        check(sameNames && weightDifference <= Tolerance,
            $"data-parallel pretrain: final weights and BN statistics ({single.Weights.Count} tensors) = one process's (max difference {weightDifference:G3} of the tensor's size or of training's largest update, {updateScale:G3}{(worst.Length > 0 ? $"; {worst}" : "")})",
            sameNames ? $"{worst} differs by {weightDifference:G3} relative" : "the tensors differ in names or sizes");
        check(File.Exists(Path.Combine(root, "parallel", PretrainRun.LatestCheckpoint)), "data-parallel pretrain: rank 0 wrote the checkpoint", "no checkpoint_latest.hcsc");
        if (_rank == 0)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"    step time (median, {GlobalBatch} images a step): one process {single.MedianStepMs:F0} ms, {_size} ranks {parallel.MedianStepMs:F0} ms (both on this machine's cores at once)"));
        }
    }

    private void ShuffledKeyBatchNormMatchesOneProcess()
    {
        using var scope = NewDisposeScope();
        var options = new Hcsc.Core.Options.ModelOptions { Arch = "resnet18", Dim = 16, QueueLength = 64, BatchNormSplits = _size, EncoderMomentum = 0.9 };
        random.manual_seed(3);
        using var reference = new HcscModel(options, Backbone);
        using var parallel = new HcscModel(new Hcsc.Core.Options.ModelOptions { Arch = "resnet18", Dim = 16, QueueLength = 64, BatchNormSplits = 1, EncoderMomentum = 0.9 }, Backbone);
        var source = reference.state_dict();
        using (no_grad())
        {
            foreach (var (name, tensor) in parallel.state_dict())
            {
                tensor.copy_(source[name]);
            }
        }

        reference.train();
        parallel.train();
        var view1 = randn([GlobalBatch, 3, 16, 16], generator: new Generator(11));
        var view2 = randn([GlobalBatch, 3, 16, 16], generator: new Generator(12));
        var (_, expected) = reference.Forward(view1, view2, new Generator(5));
        var (_, actual) = parallel.ForwardDataParallel(
            StridedShards.Take(view1, _rank, _size), StridedShards.Take(view2, _rank, _size), new Generator(5), group, shuffleAcrossRanks: true);
        var mine = StridedShards.Take(expected, _rank, _size);
        double keys = MaxRelative(mine, actual);
        check(keys <= Tolerance, $"shuffle BN over {_size} ranks: keys = one process's with {_size} BN splits (max relative difference {keys:G3})", $"{keys:G3}");

        new GradientAllReduce(group).AverageBuffers(parallel);
        var averaged = parallel.KeyEncoder.state_dict();
        double statistics = reference.KeyEncoder.state_dict()
            .Where(p => p.Key.EndsWith("running_mean", StringComparison.Ordinal) || p.Key.EndsWith("running_var", StringComparison.Ordinal))
            .Max(p => MaxRelative(p.Value, averaged[p.Key]));
        check(statistics <= Tolerance, $"shuffle BN over {_size} ranks: key encoder's running statistics, averaged = one process's (max relative difference {statistics:G3})", $"{statistics:G3}");
    }

    // Each rank scores the gathered validation features against its own block of the training features and the
    // neighbour lists are merged: the accuracies of one process, without gathering the training set's features. Features
    // of the same image computed in batches of other sizes may differ in the last bits, so a near-tie may fall the other
    // way: at most one query's vote per k.
    private void ShardedKnnMatchesOneProcess()
    {
        using var scope = NewDisposeScope();
        var data = DatasetFactory.Open("synthetic", null, 16, 120);
        random.manual_seed(4);
        using var model = new HcscModel(new Hcsc.Core.Options.ModelOptions { Arch = "resnet18", Dim = 16, QueueLength = 64, BatchNormSplits = 1 }, Backbone);
        var view = ViewTransform.Eval(16, 1.0);
        int[] ks = [1, 5, 20];
        var single = BackboneKnn.Evaluate(model, data, view, 16, 0, CPU, ks);
        var sharded = BackboneKnn.Evaluate(model, data, view, 16, 0, CPU, ks, group);
        double onePercent = 100.0 / data.Validation.Count;
        bool same = single.Count == sharded.Count && single.Zip(sharded).All(p => p.First.K == p.Second.K
            && Math.Abs(p.First.Top1 - p.Second.Top1) <= onePercent + 1e-9 && Math.Abs(p.First.Top5 - p.Second.Top5) <= onePercent + 1e-9);
        check(same, $"sharded kNN over {_size} ranks = one process's accuracies (k = 1, 5, 20; the training features never gathered)",
            $"one process {string.Join(", ", single)}; {_size} ranks {string.Join(", ", sharded)}");
    }

    private static ResNet Backbone() => ResNet.Create(new ResNetOptions { Arch = "resnet18", SmallImageStem = true, BaseWidth = 8 });

    private static double MaxRelative(Tensor expected, Tensor actual)
    {
        using var scope = NewDisposeScope();
        using var scale = expected.abs().max();
        using var difference = (expected - actual).abs().max();
        return difference.ToDouble() / Math.Max(scale.ToDouble(), 1e-12);
    }

    private Outcome Train(string folder, ICollectives collectives, Func<long, nn.Module<Tensor, Tensor>>? normLayer)
    {
        var overrides = new Dictionary<string, string?>
        {
            ["Model:Dim"] = "32", ["Model:QueueLength"] = "64", ["Model:BatchNormSplits"] = "1",
            ["Training:Epochs"] = "1", ["Training:WarmupEpochs"] = "1", ["Training:BatchSize"] = GlobalBatch.ToString(CultureInfo.InvariantCulture),
            ["Training:Workers"] = "0", ["Training:Device"] = "cpu", ["Augmentation:ImageSize"] = "16",
            ["Clustering:NumClusters:0"] = "8", ["Clustering:NumClusters:1"] = "4", ["Clustering:NumClusters:2"] = "2",
        };
        var options = HcscOptionsLoader.Load(Presets.All["synthetic-quick"], null, overrides, Console.Error)
            ?? throw new InvalidOperationException("The test's options are invalid.");
        var settings = new PretrainSettings { Dataset = "synthetic", ExperimentDirectory = folder, Width = 8, SmallStem = true, MaxImages = 4 * GlobalBatch };
        var losses = new List<double>();
        var times = new List<double>();
        var weights = new Dictionary<string, float[]>();
        var firstStepWeights = new Dictionary<string, float[]>();
        var clock = Stopwatch.StartNew();
        var run = new PretrainRun(options, settings, TextWriter.Null, collectives: collectives)
        {
            NormLayer = normLayer,
            Evaluations = false,
            AfterStep = (_, _, loss, model) =>
            {
                times.Add(clock.Elapsed.TotalMilliseconds);
                clock.Restart();
                losses.Add(loss);
                if (losses.Count == 2)
                {
                    foreach (var (name, values) in weights)
                    {
                        firstStepWeights[name] = values;
                    }
                }

                weights = new Dictionary<string, float[]>();
                foreach (var (name, tensor) in model.named_parameters().Select(p => (p.name, (Tensor)p.parameter)).Concat(model.named_buffers()))
                {
                    if (tensor.dtype == ScalarType.Float32)
                    {
                        using var host = tensor.detach().cpu();
                        weights[name] = host.data<float>().ToArray();
                    }
                }
            },
        };
        run.Execute();
        double median = times.Count == 0 ? double.NaN : times.Skip(1).DefaultIfEmpty(times[0]).Order().ElementAt(Math.Max(0, times.Count - 1) / 2);
        return new Outcome(losses, weights, firstStepWeights, median);
    }

    /// <summary>A folder every rank sees (rank 0 names it; the ranks run on one machine in the tests).</summary>
    private string SharedTemporaryFolder()
    {
        Span<long> id = [_rank == 0 ? Random.Shared.NextInt64(1, long.MaxValue) : 0];
        group.Broadcast(id, root: 0);
        string folder = Path.Combine(Path.GetTempPath(), $"hcsc-mpi-training-{id[0]:x}");
        Directory.CreateDirectory(folder);
        return folder;
    }

    private static string Show(IEnumerable<double> values) => "[" + string.Join(", ", values.Select(v => v.ToString("G9", CultureInfo.InvariantCulture))) + "]";

    private sealed record Outcome(List<double> Losses, Dictionary<string, float[]> Weights, Dictionary<string, float[]> WeightsAfterFirstStep, double MedianStepMs);
}
