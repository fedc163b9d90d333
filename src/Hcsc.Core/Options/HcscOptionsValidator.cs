using Hcsc.Core.Devices;
using Microsoft.Extensions.Options;

namespace Hcsc.Core.Options;

/// <summary>
/// Validates <see cref="HcscOptions"/> and reports every problem at once, in plain words, each
/// naming the option as it appears in configuration (e.g. <c>Model:QueueLength</c>).
/// </summary>
public sealed class HcscOptionsValidator : IValidateOptions<HcscOptions>
{
    /// <summary>Backbones the models package provides.</summary>
    public static readonly IReadOnlyList<string> KnownArchitectures = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"];

    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, HcscOptions options)
    {
        var problems = Problems(options);
        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
    }

    /// <summary>Every problem with <paramref name="options"/>; empty when they are valid.</summary>
    public static IReadOnlyList<string> Problems(HcscOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = new List<string>();
        void Require(bool condition, string problem)
        {
            if (!condition)
            {
                problems.Add(problem);
            }
        }

        var model = options.Model;
        var training = options.Training;
        var clustering = options.Clustering;
        var augmentation = options.Augmentation;

        Require(KnownArchitectures.Contains(model.Arch), $"Model:Arch is '{model.Arch}'; use one of {string.Join(", ", KnownArchitectures)}.");
        Require(model.Dim > 0, $"Model:Dim (embedding size d) must be > 0, got {model.Dim}.");
        Require(model.EncoderMomentum is >= 0 and < 1, $"Model:EncoderMomentum (m) must be in [0, 1), got {model.EncoderMomentum}.");
        Require(model.Temperature > 0 && double.IsFinite(model.Temperature), $"Model:Temperature (τ) must be a finite number > 0, got {model.Temperature}.");
        Require(model.QueueLength > 0, $"Model:QueueLength (Q) must be > 0, got {model.QueueLength}.");
        if (model.QueueLength > 0 && training.BatchSize > 0)
        {
            Require(
                model.QueueLength % training.BatchSize == 0,
                $"Model:QueueLength ({model.QueueLength}) must be a multiple of Training:BatchSize ({training.BatchSize}), so each step replaces whole batches of keys; " +
                $"e.g. {Math.Max(1, model.QueueLength / training.BatchSize) * training.BatchSize}.");
        }

        Require(model.BatchNormSplits > 0, $"Model:BatchNormSplits must be > 0, got {model.BatchNormSplits}.");
        if (model.BatchNormSplits > 0 && training.BatchSize > 0)
        {
            Require(training.BatchSize % model.BatchNormSplits == 0, $"Training:BatchSize ({training.BatchSize}) must be a multiple of Model:BatchNormSplits ({model.BatchNormSplits}).");
        }

        Require(training.Epochs > 0, $"Training:Epochs must be > 0, got {training.Epochs}.");
        Require(training.WarmupEpochs >= 0, $"Training:WarmupEpochs must be >= 0, got {training.WarmupEpochs}.");
        Require(
            training.WarmupEpochs <= training.Epochs,
            $"Training:WarmupEpochs ({training.WarmupEpochs}) is longer than the run (Training:Epochs = {training.Epochs}); at most {training.Epochs} (equal means plain MoCo).");
        Require(training.BatchSize > 0, $"Training:BatchSize must be > 0, got {training.BatchSize}.");
        Require(training.LearningRate > 0 && double.IsFinite(training.LearningRate), $"Training:LearningRate must be a finite number > 0, got {training.LearningRate}.");
        Require(training.SgdMomentum is >= 0 and < 1, $"Training:SgdMomentum must be in [0, 1), got {training.SgdMomentum}.");
        Require(training.WeightDecay >= 0 && double.IsFinite(training.WeightDecay), $"Training:WeightDecay must be a finite number >= 0, got {training.WeightDecay}.");
        Require(training.CheckpointEvery > 0, $"Training:CheckpointEvery must be > 0 epochs, got {training.CheckpointEvery}.");
        Require(training.Workers >= 0, $"Training:Workers must be >= 0, got {training.Workers}.");
        Require(TorchDevices.IsWellFormed(training.Device), $"Training:Device is '{training.Device}'; use auto, cpu, cuda or cuda:N.");

        int[] counts = clustering.NumClusters ?? [];
        Require(counts.Length > 0, "Clustering:NumClusters must list at least one prototype count, e.g. 3000,2000,1000.");
        Require(counts.All(k => k > 1), $"Clustering:NumClusters must all be > 1, got {string.Join(", ", counts)}.");
        Require(
            counts.Zip(counts.Skip(1)).All(pair => pair.First > pair.Second),
            $"Clustering:NumClusters must be strictly decreasing from the finest level to the coarsest, got {string.Join(", ", counts)}.");
        Require(clustering.Iterations > 0, $"Clustering:Iterations must be > 0, got {clustering.Iterations}.");
        Require(clustering.Restarts > 0, $"Clustering:Restarts must be > 0, got {clustering.Restarts}.");
        Require(clustering.MinPointsPerCentroid >= 0, $"Clustering:MinPointsPerCentroid must be >= 0, got {clustering.MinPointsPerCentroid}.");
        Require(
            clustering.MaxPointsPerCentroid > 0 && clustering.MaxPointsPerCentroid >= clustering.MinPointsPerCentroid,
            $"Clustering:MaxPointsPerCentroid ({clustering.MaxPointsPerCentroid}) must be > 0 and >= Clustering:MinPointsPerCentroid ({clustering.MinPointsPerCentroid}).");
        Require(
            clustering.ConcentrationLowPercentile is >= 0 and <= 100 && clustering.ConcentrationHighPercentile is >= 0 and <= 100
                && clustering.ConcentrationLowPercentile <= clustering.ConcentrationHighPercentile,
            $"Clustering:ConcentrationLowPercentile ({clustering.ConcentrationLowPercentile}) and ConcentrationHighPercentile ({clustering.ConcentrationHighPercentile}) must satisfy 0 <= low <= high <= 100.");

        Require(augmentation.ImageSize > 0, $"Augmentation:ImageSize must be > 0, got {augmentation.ImageSize}.");
        Require(augmentation.GlobalCropMinScale is > 0 and <= 1, $"Augmentation:GlobalCropMinScale must be in (0, 1], got {augmentation.GlobalCropMinScale}.");
        if (augmentation.MultiCrop)
        {
            int[] sizes = augmentation.LocalCropSizes ?? [];
            double[] low = augmentation.LocalCropMinScales ?? [];
            double[] high = augmentation.LocalCropMaxScales ?? [];
            Require(sizes.Length > 0, "Augmentation:LocalCropSizes must list at least one size when Augmentation:MultiCrop is on.");
            Require(sizes.All(s => s > 0), $"Augmentation:LocalCropSizes must all be > 0, got {string.Join(", ", sizes)}.");
            Require(
                low.Length == sizes.Length && high.Length == sizes.Length,
                $"Augmentation:LocalCropSizes, LocalCropMinScales and LocalCropMaxScales must have one entry per local view; got {sizes.Length}, {low.Length} and {high.Length}.");
            Require(
                low.Zip(high).All(pair => pair.First > 0 && pair.First <= pair.Second && pair.Second <= 1),
                "Augmentation:LocalCropMinScales and LocalCropMaxScales must satisfy 0 < min <= max <= 1 for every local view.");
        }

        return problems;
    }
}
