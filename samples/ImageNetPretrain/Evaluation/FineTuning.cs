using Hcsc.Models.Backbones;
using Hcsc.Models.Optimization;
using Hcsc.Samples.ImageNetPretrain.Augmentation;
using Hcsc.Samples.ImageNetPretrain.Data;
using Hcsc.Samples.ImageNetPretrain.Loading;
using Hcsc.Samples.ImageNetPretrain.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Evaluation;

/// <summary>
/// The semi-supervised recipe: backbone and a new linear classifier trained together on the labelled subset, each
/// with its own learning rate (defaults: SwAV's 10 % recipe — backbone 0.01, classifier 0.2 — 20 epochs, ×0.2 at 60 %
/// and 80 %, SGD momentum 0.9, no weight decay, RandomResizedCrop + flip).
/// </summary>
public sealed record FineTuningOptions
{
    /// <summary>Epochs.</summary>
    public int Epochs { get; init; } = 20;

    /// <summary>Learning rate of the backbone.</summary>
    public double BackboneLearningRate { get; init; } = 0.01;

    /// <summary>Learning rate of the classifier.</summary>
    public double ClassifierLearningRate { get; init; } = 0.2;

    /// <summary>SGD momentum.</summary>
    public double Momentum { get; init; } = 0.9;

    /// <summary>Weight decay.</summary>
    public double WeightDecay { get; init; }

    /// <summary>Images per step (at most the labelled subset).</summary>
    public int BatchSize { get; init; } = 256;

    /// <summary>Data-loading threads.</summary>
    public int Workers { get; init; } = 2;

    /// <summary>Seed of the sample order and the crops.</summary>
    public int Seed { get; init; }

    /// <summary>Every problem with these options, empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var problems = new List<string>();
        if (Epochs < 1)
        {
            problems.Add($"--epochs must be at least 1 (got {Epochs}).");
        }

        foreach (var (name, value) in new[] { ("--lr-backbone", BackboneLearningRate), ("--lr-classifier", ClassifierLearningRate) })
        {
            if (!(value >= 0) || !double.IsFinite(value))
            {
                problems.Add($"{name} must be a number >= 0 (got {value}).");
            }
        }

        if (Momentum is < 0 or >= 1 || double.IsNaN(Momentum))
        {
            problems.Add($"--momentum must lie in [0, 1) (got {Momentum}).");
        }

        if (BatchSize < 1)
        {
            problems.Add($"--batch-size must be at least 1 (got {BatchSize}).");
        }

        return problems;
    }

    /// <summary>The factor of epoch <paramref name="epoch"/> (0-based): ×0.2 at 60 % and at 80 % of the epochs.</summary>
    public double DecayAt(int epoch) => Math.Pow(0.2, (epoch >= (int)Math.Round(0.6 * Epochs) ? 1 : 0) + (epoch >= (int)Math.Round(0.8 * Epochs) ? 1 : 0));
}

/// <summary>Fine-tunes a backbone with a linear classifier on labelled images and evaluates top-1 / top-5.</summary>
public static class FineTuning
{
    /// <summary>Trains <paramref name="backbone"/>'s features (its head is not used) and a new classifier; returns the validation accuracy.</summary>
    /// <param name="backbone">The network whose <see cref="ResNet.Features"/> are fine-tuned (changed in place).</param>
    /// <param name="labelled">The labelled training images.</param>
    /// <param name="validation">Images to evaluate on.</param>
    /// <param name="classes">Number of classes.</param>
    /// <param name="evaluationView">The validation images' view (<see cref="ViewTransform.Eval(int, double)"/>); the training crops have its side.</param>
    /// <param name="options">The recipe.</param>
    /// <param name="device">Where to train.</param>
    /// <param name="epochDone">Called after each epoch with (epoch, mean loss).</param>
    public static LinearProbeResult Train(
        ResNet backbone, IImageDataset labelled, IImageDataset validation, int classes, ViewTransform evaluationView, FineTuningOptions options, Device device, Action<int, double>? epochDone = null)
    {
        ArgumentNullException.ThrowIfNull(evaluationView);
        int imageSize = evaluationView.Size;
        var problems = options.Validate();
        if (problems.Count > 0)
        {
            throw new ArgumentException("Invalid fine-tuning options: " + string.Join(" ", problems), nameof(options));
        }

        using var classifier = nn.Linear(backbone.FeatureDim, classes);
        using (no_grad())
        {
            using var generator = new Generator(unchecked((ulong)options.Seed));
            using var initial = normal(0, 0.01, [classes, backbone.FeatureDim], generator: generator); // on the CPU, as the classifier is here
            classifier.weight!.copy_(initial);
            classifier.bias!.zero_();
        }

        classifier.to(device);
        var groups = new[]
        {
            new SGD.ParamGroup(BackboneParameters(backbone), options.BackboneLearningRate, options.Momentum, weight_decay: options.WeightDecay),
            new SGD.ParamGroup(classifier.parameters(), options.ClassifierLearningRate, options.Momentum, weight_decay: options.WeightDecay),
        };
        using var optimizer = new ExplicitScalarSgd(groups, options.ClassifierLearningRate, options.Momentum, options.WeightDecay);
        int batchSize = Math.Min(options.BatchSize, labelled.Count);
        var crops = new ViewTransform(imageSize, 0.08, 1.0, PhotometricRecipe.None);
        using var loader = new BatchLoader(labelled, [crops], batchSize, options.Workers, options.Seed);
        var losses = new List<double>(options.Epochs);
        for (int epoch = 0; epoch < options.Epochs; epoch++)
        {
            double decay = options.DecayAt(epoch);
            optimizer.ParamGroups.ElementAt(0).LearningRate = options.BackboneLearningRate * decay;
            optimizer.ParamGroups.ElementAt(1).LearningRate = options.ClassifierLearningRate * decay;
            backbone.train();
            using var lossSum = zeros(1, dtype: float64, device: device); // summed on the device: no sync per step
            int steps = 0;
            foreach (var batch in loader.TrainingEpoch(epoch))
            {
                using var held = batch;
                using var scope = NewDisposeScope();
                var images = batch.View(0, device); // a blocking copy (the loader is not pinned): the step reads nothing back
                var labels = FeatureExtractor.Labels(labelled, batch.Indices, device);
                var loss = nn.functional.cross_entropy(classifier.call(backbone.Features(images)), labels);
                optimizer.zero_grad();
                loss.backward();
                optimizer.step();
                using var one = 1.ToScalar();
                lossSum.add_(loss.detach().to(float64), one);
                steps++;
            }

            double mean = lossSum.item<double>() / Math.Max(1, steps);
            if (!double.IsFinite(mean))
            {
                throw new InvalidOperationException($"The fine-tuning loss became {mean} in epoch {Numbering.Displayed(epoch)}; lower --lr-backbone / --lr-classifier.");
            }

            losses.Add(mean);
            epochDone?.Invoke(epoch, mean);
        }

        backbone.eval();
        using var evaluation = NewDisposeScope();
        var logits = FeatureExtractor.Extract(validation, x => classifier.call(backbone.Features(x)), evaluationView, batchSize, options.Workers, device, out var rows);
        var truth = FeatureExtractor.Labels(validation, rows, device);
        var (top1, top5) = TopK.Accuracy(logits, truth);
        return new LinearProbeResult(top1, top5, losses);
    }

    // The backbone without its projection head: the head is not part of the fine-tuned network.
    private static IEnumerable<Parameter> BackboneParameters(ResNet backbone) =>
        backbone.named_parameters().Where(p => !p.name.StartsWith("fc.", StringComparison.Ordinal)).Select(p => p.parameter);
}

/// <summary>Top-1 and top-5 accuracy of logits.</summary>
public static class TopK
{
    /// <summary>Percent of rows of <paramref name="logits"/> [M, C] whose label [M] is the arg-max, and among the 5 largest (C when fewer).</summary>
    public static (double Top1, double Top5) Accuracy(Tensor logits, Tensor labels)
    {
        using var scope = NewDisposeScope();
        int k = (int)Math.Min(5, logits.shape[1]);
        var hits = logits.topk(k, dim: 1).indexes.eq(labels.unsqueeze(1)); // [M, k]
        double count = labels.shape[0];
        return (hits.select(1, 0).sum().item<long>() * 100.0 / count, hits.any(1).sum().item<long>() * 100.0 / count);
    }
}
