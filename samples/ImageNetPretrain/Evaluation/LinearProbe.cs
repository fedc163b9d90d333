using Hcsc.Models.Optimization;
using Hcsc.Samples.ImageNetPretrain.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Evaluation;

/// <summary>The linear-probe recipe (docs/method.md §9): SGD on a linear layer over frozen, pooled backbone features.</summary>
public sealed record LinearProbeOptions
{
    /// <summary>Epochs (reference: 100).</summary>
    public int Epochs { get; init; } = 100;

    /// <summary>Initial learning rate (reference: 5.0 — sic, for unnormalised ResNet-50 features).</summary>
    public double LearningRate { get; init; } = 5.0;

    /// <summary>SGD momentum (reference: 0.9).</summary>
    public double Momentum { get; init; } = 0.9;

    /// <summary>Weight decay (reference: 0).</summary>
    public double WeightDecay { get; init; }

    /// <summary>Samples per step (reference: 256).</summary>
    public int BatchSize { get; init; } = 256;

    /// <summary>The learning rate is multiplied by 0.1 at each of these fractions of the epochs (reference: epochs 60 and 80 of 100).</summary>
    public IReadOnlyList<double> Milestones { get; init; } = [0.6, 0.8];

    /// <summary>Seed of the weight initialisation and the sample order.</summary>
    public int Seed { get; init; }

    /// <summary>Every problem with these options, empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var problems = new List<string>();
        if (Epochs < 1)
        {
            problems.Add($"--epochs must be at least 1 (got {Epochs}).");
        }

        if (!(LearningRate > 0) || !double.IsFinite(LearningRate))
        {
            problems.Add($"--lr must be a positive number (got {LearningRate}).");
        }

        if (Momentum is < 0 or >= 1 || double.IsNaN(Momentum))
        {
            problems.Add($"--momentum must lie in [0, 1) (got {Momentum}).");
        }

        if (WeightDecay < 0 || double.IsNaN(WeightDecay))
        {
            problems.Add($"--wd must be >= 0 (got {WeightDecay}).");
        }

        if (BatchSize < 1)
        {
            problems.Add($"--batch-size must be at least 1 (got {BatchSize}).");
        }

        if (Milestones.Any(m => m is <= 0 or >= 1))
        {
            problems.Add($"Milestones are fractions of the epochs in (0, 1) (got {string.Join(", ", Milestones)}).");
        }

        return problems;
    }

    /// <summary>Learning rate of epoch <paramref name="epoch"/> (0-based): ×0.1 for every milestone reached.</summary>
    public double LearningRateAt(int epoch) =>
        LearningRate * Math.Pow(0.1, Milestones.Count(m => epoch >= (int)Math.Round(m * Epochs)));
}

/// <summary>What a linear probe reached on the validation set, and its training loss per epoch.</summary>
/// <param name="Top1">Validation top-1 accuracy in percent.</param>
/// <param name="Top5">Validation top-5 accuracy in percent (top-C when there are fewer than 5 classes).</param>
/// <param name="EpochLosses">Mean training cross-entropy of each epoch.</param>
public sealed record LinearProbeResult(double Top1, double Top5, IReadOnlyList<double> EpochLosses);

/// <summary>
/// Trains a linear classifier W·f + b (W [C, D] ~ N(0, 0.01), b = 0) with cross-entropy on features f [N, D] of a
/// frozen backbone. Features come from <c>trainFeatures(epoch)</c>: the same cached tensor every epoch (fast), or
/// freshly augmented ones (the reference protocol: RandomResizedCrop + flip).
/// </summary>
public static class LinearProbe
{
    /// <summary>Trains on fixed features [N, D] with labels [N] (int64), the caller's, and evaluates.</summary>
    /// <inheritdoc cref="Train(Func{int, ValueTuple{Tensor, Tensor}}, Tensor, Tensor, int, LinearProbeOptions, Action{int, double}?)"/>
    public static LinearProbeResult Train(
        Tensor trainFeatures, Tensor trainLabels, Tensor validationFeatures, Tensor validationLabels, int classes,
        LinearProbeOptions options, Action<int, double>? epochDone = null) =>
        Train(_ => (trainFeatures, trainLabels), validationFeatures, validationLabels, classes, options, epochDone, ownsEpochFeatures: false);

    /// <summary>Trains on features made afresh for every epoch, which the probe disposes after the epoch, and evaluates.</summary>
    /// <param name="trainFeatures">Features [N, D] and labels [N] (int64) for an epoch (0-based).</param>
    /// <param name="validationFeatures">Features [M, D] of the validation set.</param>
    /// <param name="validationLabels">Labels [M] (int64).</param>
    /// <param name="classes">C, the number of classes.</param>
    /// <param name="options">The recipe.</param>
    /// <param name="epochDone">Called after each epoch with (epoch, mean loss).</param>
    /// <exception cref="ArgumentException">Invalid options, or features and labels that do not fit.</exception>
    public static LinearProbeResult Train(
        Func<int, (Tensor Features, Tensor Labels)> trainFeatures, Tensor validationFeatures, Tensor validationLabels, int classes,
        LinearProbeOptions options, Action<int, double>? epochDone = null) =>
        Train(trainFeatures, validationFeatures, validationLabels, classes, options, epochDone, ownsEpochFeatures: true);

    private static LinearProbeResult Train(
        Func<int, (Tensor Features, Tensor Labels)> trainFeatures, Tensor validationFeatures, Tensor validationLabels, int classes,
        LinearProbeOptions options, Action<int, double>? epochDone, bool ownsEpochFeatures)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = options.Validate();
        if (problems.Count > 0)
        {
            throw new ArgumentException("Invalid linear-probe options: " + string.Join(" ", problems), nameof(options));
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(classes, 2);
        long dim = validationFeatures.shape[1];
        var device = validationFeatures.device;
        var generator = new Generator(unchecked((ulong)options.Seed), CPU);
        using var classifier = nn.Linear(dim, classes);
        using (no_grad())
        {
            classifier.weight!.copy_(normal(0, 0.01, [classes, dim], generator: generator));
            classifier.bias!.zero_();
        }

        classifier.to(device);
        using var optimizer = new ExplicitScalarSgd(classifier.parameters(), options.LearningRate, options.Momentum, weightDecay: options.WeightDecay);
        var losses = new List<double>(options.Epochs);
        using var one = 1.ToScalar(); // explicit alpha: add_(Tensor) would make an implicit Scalar 1 itself
        for (int epoch = 0; epoch < options.Epochs; epoch++)
        {
            foreach (var group in optimizer.ParamGroups)
            {
                group.LearningRate = options.LearningRateAt(epoch);
            }

            using var scope = NewDisposeScope();
            var (features, labels) = trainFeatures(epoch);
            using var ownedFeatures = ownsEpochFeatures ? features : null;
            using var ownedLabels = ownsEpochFeatures ? labels : null;
            if (features.shape[0] != labels.shape[0] || features.shape[1] != dim)
            {
                throw new ArgumentException($"Training features {string.Join('x', features.shape)} and labels [{labels.shape[0]}] do not fit a [{dim}]-feature probe.");
            }

            var order = randperm(features.shape[0], generator: generator).to(device);
            var lossSum = zeros(1, dtype: float64, device: device);
            long batches = 0;
            for (long start = 0; start < features.shape[0]; start += options.BatchSize)
            {
                using var stepScope = NewDisposeScope();
                var rows = order.narrow(0, start, Math.Min(options.BatchSize, features.shape[0] - start));
                var loss = nn.functional.cross_entropy(classifier.call(features.index_select(0, rows)), labels.index_select(0, rows));
                optimizer.zero_grad();
                loss.backward();
                optimizer.step();
                lossSum.add_(loss.detach().to(float64), one);
                batches++;
            }

            double mean = lossSum.item<double>() / batches;
            if (!double.IsFinite(mean))
            {
                throw new InvalidOperationException($"The linear probe's loss became {mean} in epoch {Numbering.Displayed(epoch)}; lower --lr (now {options.LearningRate}).");
            }

            losses.Add(mean);
            epochDone?.Invoke(epoch, mean);
        }

        using (no_grad())
        {
            using var scope = NewDisposeScope();
            var (top1, top5) = TopK.Accuracy(classifier.call(validationFeatures), validationLabels);
            return new LinearProbeResult(top1, top5, losses);
        }
    }
}
