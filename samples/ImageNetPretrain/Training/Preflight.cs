using System.Diagnostics;
using Hcsc.Clustering;
using Hcsc.Core.Options;
using Hcsc.Losses;
using Hcsc.Models;
using Hcsc.Models.Backbones;
using Hcsc.Models.Checkpoints;
using Hcsc.Models.Optimization;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// Runs, before the first epoch and on the run's device, what the run would otherwise first do after its warm-up:
/// hierarchical k-means, one HCSC step with selection (masks drawn on the device, backward, optimiser step, enqueue into
/// the selective queue) and a checkpoint round trip, on a small model and random data. A device problem then stops the
/// run in seconds with a message naming the device and the stage, not after hours of warm-up.
/// </summary>
/// <remarks>
/// It runs before the run seeds its random sources, and draws only from its own generators, so the run's results are
/// the same with and without it.
/// </remarks>
public static class Preflight
{
    private const int Batch = 8, Dim = 16, QueueLength = 32, ImageSize = 16;

    /// <summary>Runs the checks; returns the seconds taken.</summary>
    /// <exception cref="InvalidOperationException">A stage failed; the message names the device, the stage and the cause.</exception>
    public static double Run(Device device, ObjectiveOptions objectiveOptions, string scratchFolder)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(objectiveOptions);
        var clock = Stopwatch.StartNew();
        string stage = "building a model";
        string checkpoint = Path.Combine(scratchFolder, $".preflight-{Environment.ProcessId}.hcsc");
        try
        {
            using var scope = NewDisposeScope();
            using var generator = new Generator(12345);
            using var model = new HcscModel(
                new ModelOptions { Arch = "resnet18", Dim = Dim, QueueLength = QueueLength, BatchNormSplits = 2 },
                () => ResNet.Create(new ResNetOptions { Arch = "resnet18", SmallImageStem = true, BaseWidth = 4 }));
            model.to(device);
            model.train();

            stage = "hierarchical k-means";
            var points = nn.functional.normalize(randn([64, Dim], generator: generator), dim: 1).to(device);
            var clustering = new ClusteringOptions { NumClusters = [8, 4, 2], Iterations = 3, Restarts = 1, MinPointsPerCentroid = 1 };
            using var clustered = new HierarchicalKMeans(clustering, objectiveOptions.Temperature).Fit(points);

            stage = "an HCSC step with selection";
            using var queue = new SelectiveKeyQueue(QueueLength, Dim, device, generator);
            using var objective = new HcscObjective(objectiveOptions);
            using var optimizer = new ExplicitScalarSgd(model.PackParameters(), 0.01, 0.9, weightDecay: 1e-4);
            var view1 = randn([Batch, 3, ImageSize, ImageSize], generator: generator).to(device);
            var view2 = randn([Batch, 3, ImageSize, ImageSize], generator: generator).to(device);
            var indices = randint(64, [Batch], generator: generator).to(device);
            var (q, k) = model.Forward(view1, view2, generator);
            var loss = objective.Compute(q, k, queue, indices, clustered.Hierarchy, generator);
            loss.Backward();
            optimizer.step();
            queue.Enqueue(k, indices);
            if (!loss.Total.isfinite().cpu().item<bool>())
            {
                throw new InvalidOperationException("the loss is not finite.");
            }

            stage = "a checkpoint round trip";
            TrainingCheckpoint.Save(checkpoint, 0, model, optimizer, queue);
            TrainingCheckpoint.Load(checkpoint, model, optimizer, queue); // no extra tensors saved: nothing to dispose
            return clock.Elapsed.TotalSeconds;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new InvalidOperationException(
                $"Preflight on {device} failed at {stage}: {e.Message.Split('\n')[0].Trim()} " +
                "Nothing was trained: the run would have failed there after its warm-up. " +
                "Check the device and the TorchSharp backend (the gpu-check command runs these checks with details); --skip-preflight skips this check.", e);
        }
        finally
        {
            File.Delete(checkpoint);
        }
    }
}
