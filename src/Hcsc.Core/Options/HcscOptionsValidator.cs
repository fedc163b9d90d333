using Hcsc.Core.Devices;
using Microsoft.Extensions.Options;

namespace Hcsc.Core.Options;

/// <summary>
/// The one place where every option's rule is written. Validates <see cref="HcscOptions"/> section by section and
/// reports every problem at once, in plain words, each naming the option as it appears in configuration (e.g.
/// <c>Model:QueueLength</c>). The constructors that take a section (<c>HcscObjective</c>, <c>KMeans</c>,
/// <c>HierarchicalKMeans</c>, <c>HcscModel</c>) check it with the same rules (<see cref="Problems(ObjectiveOptions)"/>
/// and its overloads, then <see cref="ThrowIfInvalid"/>), and the functions that take a single value (τ, m, the
/// concentration percentiles) with <see cref="TemperatureProblem"/>, <see cref="EncoderMomentumProblem"/> and
/// <see cref="ConcentrationPercentilesProblem"/>.
/// </summary>
public sealed class HcscOptionsValidator :
    IValidateOptions<HcscOptions>,
    IValidateOptions<ModelOptions>,
    IValidateOptions<ObjectiveOptions>,
    IValidateOptions<KMeansOptions>,
    IValidateOptions<ClusteringOptions>
{
    /// <summary>The backbones <c>Model:Arch</c> may name, in order of depth (the table of package <c>Hcsc.Models</c> has exactly these).</summary>
    public static readonly IReadOnlyList<string> KnownArchitectures = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"];

    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, HcscOptions options) => Result(Problems(options));

    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, ModelOptions options) => Result(Problems(options));

    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, ObjectiveOptions options) => Result(Problems(options));

    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, KMeansOptions options) => Result(Problems(options));

    /// <inheritdoc />
    public ValidateOptionsResult Validate(string? name, ClusteringOptions options) => Result(Problems(options));

    /// <summary>Every problem with <paramref name="options"/>, section by section and then across sections; empty when they are valid.</summary>
    public static IReadOnlyList<string> Problems(HcscOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = new ProblemList();
        var model = options.Model;
        var training = options.Training;
        problems.AddRange(Problems(model));
        if (model.QueueLength > 0 && training.BatchSize > 0)
        {
            problems.Require(
                model.QueueLength % training.BatchSize == 0,
                $"Model:QueueLength ({model.QueueLength}) must be a multiple of Training:BatchSize ({training.BatchSize}), so each step replaces whole batches of keys; " +
                $"e.g. {Math.Max(1, model.QueueLength / training.BatchSize) * training.BatchSize}.");
        }

        if (model.BatchNormSplits > 0 && training.BatchSize > 0)
        {
            problems.Require(training.BatchSize % model.BatchNormSplits == 0, $"Training:BatchSize ({training.BatchSize}) must be a multiple of Model:BatchNormSplits ({model.BatchNormSplits}).");
        }

        problems.AddRange(Problems(training));
        problems.AddRange(Problems(options.Objective));
        problems.AddRange(Problems(options.Clustering));
        problems.AddRange(Problems(options.Augmentation));
        return problems;
    }

    /// <summary>Every problem with the encoder settings (<c>Model:*</c>); empty when they are valid.</summary>
    public static IReadOnlyList<string> Problems(ModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = new ProblemList();
        problems.Require(
            options.Arch is not null && KnownArchitectures.Contains(options.Arch, StringComparer.OrdinalIgnoreCase),
            $"Model:Arch is '{options.Arch}'; use one of {string.Join(", ", KnownArchitectures)}.");
        problems.Require(options.Dim > 0, $"Model:Dim (embedding size d) must be > 0, got {options.Dim}.");
        problems.Add(EncoderMomentumProblem(options.EncoderMomentum));
        problems.Require(options.QueueLength > 0, $"Model:QueueLength (Q) must be > 0, got {options.QueueLength}.");
        problems.Require(options.BatchNormSplits > 0, $"Model:BatchNormSplits must be > 0, got {options.BatchNormSplits}.");
        return problems;
    }

    /// <summary>Every problem with the objective's settings (<c>Objective:*</c>); empty when they are valid.</summary>
    public static IReadOnlyList<string> Problems(ObjectiveOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = new ProblemList();
        problems.Add(TemperatureProblem(options.Temperature));
        problems.RequireDefined(options.UnselectedNegatives, "Objective:UnselectedNegatives");
        problems.RequireDefined(options.InstanceLevelReduction, "Objective:InstanceLevelReduction");
        problems.RequireDefined(options.Kernels, "Objective:Kernels");
        return problems;
    }

    /// <summary>
    /// Every problem with the settings of one k-means level (<c>Clustering:Iterations</c>, <c>Restarts</c>, …); empty
    /// when they are valid. For a <see cref="ClusteringOptions"/> use <see cref="Problems(ClusteringOptions)"/>, which
    /// also checks the levels.
    /// </summary>
    public static IReadOnlyList<string> Problems(KMeansOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = new ProblemList();
        problems.Require(options.Iterations > 0, $"Clustering:Iterations must be > 0, got {options.Iterations}.");
        problems.Require(options.Restarts > 0, $"Clustering:Restarts must be > 0, got {options.Restarts}.");
        problems.Require(options.MinPointsPerCentroid >= 0, $"Clustering:MinPointsPerCentroid must be >= 0, got {options.MinPointsPerCentroid}.");
        problems.Require(
            options.MaxPointsPerCentroid > 0 && options.MaxPointsPerCentroid >= options.MinPointsPerCentroid,
            $"Clustering:MaxPointsPerCentroid ({options.MaxPointsPerCentroid}) must be > 0 and >= Clustering:MinPointsPerCentroid ({options.MinPointsPerCentroid}).");
        problems.Require(options.ChunkBytes > 0, $"Clustering:ChunkBytes must be > 0, got {options.ChunkBytes}.");
        problems.RequireDefined(options.Initialization, "Clustering:Initialization");
        return problems;
    }

    /// <summary>
    /// Every problem with the hierarchical k-means settings (<c>Clustering:*</c>): the levels, the concentration clip
    /// and every level's k-means (<see cref="Problems(KMeansOptions)"/>); empty when they are valid. Each level needs
    /// at least 2 prototypes: with one, PCSC has no negative prototype and every queue negative shares the query's cluster.
    /// </summary>
    public static IReadOnlyList<string> Problems(ClusteringOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = new ProblemList();
        int[] counts = options.NumClusters ?? [];
        problems.Require(counts.Length > 0, "Clustering:NumClusters must list at least one prototype count, e.g. 3000,2000,1000.");
        problems.Require(counts.All(k => k >= 2), $"Clustering:NumClusters must all be >= 2, got {string.Join(", ", counts)}.");
        problems.Require(
            counts.Zip(counts.Skip(1)).All(pair => pair.First > pair.Second),
            $"Clustering:NumClusters must be strictly decreasing from the finest level to the coarsest, got {string.Join(", ", counts)}.");
        problems.AddRange(Problems((KMeansOptions)options));
        problems.Add(ConcentrationPercentilesProblem(options.ConcentrationLowPercentile, options.ConcentrationHighPercentile));
        return problems;
    }

    /// <summary>The rule for τ (<c>Objective:Temperature</c>): a finite number &gt; 0. Null when <paramref name="temperature"/> follows it, else the problem.</summary>
    public static string? TemperatureProblem(double temperature) =>
        temperature > 0 && double.IsFinite(temperature) ? null : $"Objective:Temperature (τ) must be a finite number > 0, got {temperature}.";

    /// <summary>
    /// The rule for m (<c>Model:EncoderMomentum</c>): in [0, 1). m = 1 would freeze the key encoder at its random
    /// initialisation. Null when <paramref name="momentum"/> follows it, else the problem.
    /// </summary>
    public static string? EncoderMomentumProblem(double momentum) =>
        momentum is >= 0 and < 1 ? null : $"Model:EncoderMomentum (m) must be in [0, 1), got {momentum}.";

    /// <summary>The rule for the concentration clip (<c>Clustering:Concentration*Percentile</c>): 0 &lt;= low &lt;= high &lt;= 100. Null when it holds, else the problem.</summary>
    public static string? ConcentrationPercentilesProblem(double low, double high) =>
        low is >= 0 and <= 100 && high is >= 0 and <= 100 && low <= high
            ? null
            : $"Clustering:ConcentrationLowPercentile ({low}) and ConcentrationHighPercentile ({high}) must satisfy 0 <= low <= high <= 100.";

    /// <summary>Throws an <see cref="ArgumentException"/> for <paramref name="paramName"/> listing every one of <paramref name="problems"/>; returns when there are none.</summary>
    /// <param name="problems">What one of the <c>Problems</c> overloads returned.</param>
    /// <param name="paramName">The parameter that held the options.</param>
    /// <exception cref="ArgumentException">There is at least one problem.</exception>
    public static void ThrowIfInvalid(IReadOnlyList<string> problems, string paramName)
    {
        ArgumentNullException.ThrowIfNull(problems);
        if (problems.Count > 0)
        {
            throw new ArgumentException("Invalid options: " + string.Join(" ", problems), paramName);
        }
    }

    private static IReadOnlyList<string> Problems(TrainingOptions training)
    {
        var problems = new ProblemList();
        problems.Require(training.Epochs > 0, $"Training:Epochs must be > 0, got {training.Epochs}.");
        problems.Require(training.WarmupEpochs >= 0, $"Training:WarmupEpochs must be >= 0, got {training.WarmupEpochs}.");
        problems.Require(
            training.WarmupEpochs <= training.Epochs,
            $"Training:WarmupEpochs ({training.WarmupEpochs}) is longer than the run (Training:Epochs = {training.Epochs}); at most {training.Epochs} (equal means plain MoCo).");
        problems.Require(training.BatchSize > 0, $"Training:BatchSize must be > 0, got {training.BatchSize}.");
        problems.Require(training.LearningRate > 0 && double.IsFinite(training.LearningRate), $"Training:LearningRate must be a finite number > 0, got {training.LearningRate}.");
        problems.Require(training.SgdMomentum is >= 0 and < 1, $"Training:SgdMomentum must be in [0, 1), got {training.SgdMomentum}.");
        problems.Require(training.WeightDecay >= 0 && double.IsFinite(training.WeightDecay), $"Training:WeightDecay must be a finite number >= 0, got {training.WeightDecay}.");
        problems.Require(training.CheckpointEvery > 0, $"Training:CheckpointEvery must be > 0 epochs, got {training.CheckpointEvery}.");
        problems.Require(training.Workers >= -1, $"Training:Workers must be >= 0 (0: load on the training thread), or -1 for the cores available, got {training.Workers}.");
        problems.Require(TorchDevices.IsWellFormed(training.Device), $"Training:Device is '{training.Device}'; use auto, cpu, cuda or cuda:N.");
        return problems;
    }

    private static IReadOnlyList<string> Problems(AugmentationOptions augmentation)
    {
        var problems = new ProblemList();
        problems.Require(augmentation.ImageSize > 0, $"Augmentation:ImageSize must be > 0, got {augmentation.ImageSize}.");
        problems.Require(augmentation.EvalCropFraction is > 0 and <= 1, $"Augmentation:EvalCropFraction must be in (0, 1], got {augmentation.EvalCropFraction}.");
        problems.Require(augmentation.GlobalCropMinScale is > 0 and <= 1, $"Augmentation:GlobalCropMinScale must be in (0, 1], got {augmentation.GlobalCropMinScale}.");
        problems.Require(augmentation.BlurProbability is >= 0 and <= 1, $"Augmentation:BlurProbability must be in [0, 1], got {augmentation.BlurProbability}.");
        if (augmentation.MultiCrop)
        {
            int[] sizes = augmentation.ResolvedLocalCropSizes();
            double[] low = augmentation.LocalCropMinScales ?? [];
            double[] high = augmentation.LocalCropMaxScales ?? [];
            problems.Require(sizes.Length > 0, "Augmentation:LocalCropSizes must list at least one size when Augmentation:MultiCrop is on.");
            problems.Require(sizes.All(s => s > 0), $"Augmentation:LocalCropSizes must all be > 0, got {string.Join(", ", sizes)}.");
            foreach (int size in sizes.Where(s => s >= augmentation.ImageSize).Distinct())
            {
                problems.Add(
                    $"Augmentation:LocalCropSizes holds a local view of {size} px, not smaller than the global view's {augmentation.ImageSize} px (Augmentation:ImageSize); " +
                    "local views are the small crops of multi-crop. Leave LocalCropSizes empty to take the reference's ratios of the global size, or list smaller sizes.");
            }
            problems.Require(
                low.Length == sizes.Length && high.Length == sizes.Length,
                $"Augmentation:LocalCropSizes, LocalCropMinScales and LocalCropMaxScales must have one entry per local view; got {sizes.Length}, {low.Length} and {high.Length}.");
            problems.Require(
                low.Zip(high).All(pair => pair.First > 0 && pair.First <= pair.Second && pair.Second <= 1),
                "Augmentation:LocalCropMinScales and LocalCropMaxScales must satisfy 0 < min <= max <= 1 for every local view.");
        }

        return problems;
    }

    private static ValidateOptionsResult Result(IReadOnlyList<string> problems) =>
        problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
}

/// <summary>A list of problems that a rule adds to when it does not hold.</summary>
internal sealed class ProblemList : List<string>
{
    public void Require(bool condition, string problem)
    {
        if (!condition)
        {
            Add(problem);
        }
    }

    public void RequireDefined<T>(T value, string key)
        where T : struct, Enum =>
        Require(Enum.IsDefined(value), $"{key} must be {string.Join(" or ", Enum.GetNames<T>())}, got {value.ToString("D")}.");

    public new void Add(string? problem)
    {
        if (problem is not null)
        {
            base.Add(problem);
        }
    }
}
