namespace Hcsc.Core.Options;

/// <summary>
/// Every hyper-parameter of HCSC (docs/method.md: Notation, §1–§8), with the reference
/// implementation's defaults: ResNet-50, d = 128, Q = 16384, τ = 0.2, m = 0.999,
/// prototypes 3000 → 2000 → 1000, 20 warm-up epochs of 200, batch 256, lr 0.03.
/// One type per concern, each the configuration section of the same name (<c>Hcsc:Model</c>, <c>Hcsc:Objective</c>, …).
/// Bind it from configuration with <see cref="HcscServiceCollectionExtensions.AddHcscOptions"/>
/// and check it with <see cref="HcscOptionsValidator"/>.
/// </summary>
public sealed class HcscOptions
{
    /// <summary>Configuration section name: <c>Hcsc</c>.</summary>
    public const string SectionName = "Hcsc";

    /// <summary>The encoder and the contrastive setup.</summary>
    public ModelOptions Model { get; set; } = new();

    /// <summary>Optimisation and the run.</summary>
    public TrainingOptions Training { get; set; } = new();

    /// <summary>Hierarchical k-means (docs/method.md §2).</summary>
    public ClusteringOptions Clustering { get; set; } = new();

    /// <summary>The objective: τ and the instance and prototype selection switches (docs/method.md §3–§5 and §11).</summary>
    public ObjectiveOptions Objective { get; set; } = new();

    /// <summary>Augmentation and multi-crop (docs/method.md §7, §8).</summary>
    public AugmentationOptions Augmentation { get; set; } = new();
}

/// <summary>The encoder, the momentum encoder and the queue.</summary>
public sealed class ModelOptions
{
    /// <summary>Backbone, one of <see cref="HcscOptionsValidator.KnownArchitectures"/>: resnet18, resnet34, resnet50, resnet101 or resnet152. Default resnet50.</summary>
    public string Arch { get; set; } = "resnet50";

    /// <summary>d: embedding size; every embedding is L2-normalised. Default 128.</summary>
    public int Dim { get; set; } = 128;

    /// <summary>Use the MLP projection head (Linear → ReLU → Linear), as MoCo v2 and HCSC do. Default true.</summary>
    public bool Mlp { get; set; } = true;

    /// <summary>m: EMA momentum of the key encoder, θ_k ← m·θ_k + (1−m)·θ_q. Default 0.999.</summary>
    public double EncoderMomentum { get; set; } = 0.999;

    /// <summary>Q: number of past keys kept as negatives; a multiple of the batch size. Default 16384.</summary>
    public int QueueLength { get; set; } = 16384;

    /// <summary>Sub-batches of split-batch BN for the key encoder on one device (docs/method.md R5); divides the batch size. Default 8.</summary>
    public int BatchNormSplits { get; set; } = 8;

    /// <summary>A copy of these options.</summary>
    public ModelOptions Clone() => (ModelOptions)MemberwiseClone();
}

/// <summary>SGD, the schedule and the run.</summary>
public sealed class TrainingOptions
{
    /// <summary>Total epochs. Default 200.</summary>
    public int Epochs { get; set; } = 200;

    /// <summary>Epochs of plain MoCo InfoNCE before the first clustering; equal to <see cref="Epochs"/> means plain MoCo. Default 20.</summary>
    public int WarmupEpochs { get; set; } = 20;

    /// <summary>Images per step. Default 256.</summary>
    public int BatchSize { get; set; } = 256;

    /// <summary>Base learning rate for a batch of 256; the rate used is lr · batch / 256 (see <see cref="ScaledLearningRate"/>). Default 0.03.</summary>
    public double LearningRate { get; set; } = 0.03;

    /// <summary>SGD momentum. Default 0.9.</summary>
    public double SgdMomentum { get; set; } = 0.9;

    /// <summary>SGD weight decay. Default 1e-4.</summary>
    public double WeightDecay { get; set; } = 1e-4;

    /// <summary>Cosine learning-rate schedule to 0 over the run, set per epoch. Default true.</summary>
    public bool Cosine { get; set; } = true;

    /// <summary>Write a checkpoint every this many epochs (and at the end). Default 5.</summary>
    public int CheckpointEvery { get; set; } = 5;

    /// <summary>Seed of every random source of the run. Default 0.</summary>
    public long Seed { get; set; }

    /// <summary>auto, cpu, cuda or cuda:N. Default auto.</summary>
    public string Device { get; set; } = "auto";

    /// <summary>
    /// Data-loading threads; 0 loads on the training thread; -1 (default) takes the cores available to this process
    /// (divided among the ranks a launcher starts on one machine).
    /// </summary>
    public int Workers { get; set; } = -1;

    /// <summary>The learning rate actually used at epoch 0: <see cref="LearningRate"/> · <see cref="BatchSize"/> / 256.</summary>
    public double ScaledLearningRate => LearningRate * BatchSize / 256.0;
}

/// <summary>Augmentation and multi-crop (docs/method.md §7, §8).</summary>
public sealed class AugmentationOptions
{
    /// <summary>MoCo v2 augmentation (colour jitter, grey, blur); false uses MoCo v1's. Default true.</summary>
    public bool AugPlus { get; set; } = true;

    /// <summary>Side of the global crops. Default 224.</summary>
    public int ImageSize { get; set; } = 224;

    /// <summary>
    /// The evaluation view (clustering, kNN, probes): the image is resized to <c>ImageSize / EvalCropFraction</c> and its centre
    /// <c>ImageSize</c>² kept. Default 0.875, ImageNet's resize 256 / centre crop 224; 1 keeps the whole image, as the
    /// small-image presets do (on 28-pixel images 0.875 drops the outer 1.75 pixels, a quarter of the area).
    /// </summary>
    public double EvalCropFraction { get; set; } = 0.875;

    /// <summary>Lower RandomResizedCrop scale of the two global crops (upper is 1). Default 0.2, as MoCo v2.</summary>
    public double GlobalCropMinScale { get; set; } = 0.2;

    /// <summary>
    /// Probability of MoCo v2's Gaussian blur (σ ∈ [0.1, 2] pixels of the view) on every view; 0 turns it off. Default 0.5,
    /// as MoCo v2 (and every preset).
    /// </summary>
    public double BlurProbability { get; set; } = 0.5;

    /// <summary>Add local views (the 73.3 % setting). Default false.</summary>
    public bool MultiCrop { get; set; }

    /// <summary>
    /// Sides of the local views. Default empty: the reference's sizes relative to the global view,
    /// <see cref="ReferenceLocalCropRatios"/> × <see cref="ImageSize"/> (192, 160, 128, 96 at 224; 27, 23, 18, 14 at 32),
    /// so one switch works at any image size (<see cref="ResolvedLocalCropSizes"/>). Each must be smaller than
    /// <see cref="ImageSize"/>.
    /// </summary>
    public int[] LocalCropSizes { get; set; } = [];

    /// <summary>The reference's local view sizes over its global view: 192/224, 160/224, 128/224, 96/224.</summary>
    public static IReadOnlyList<double> ReferenceLocalCropRatios { get; } = [192 / 224.0, 160 / 224.0, 128 / 224.0, 96 / 224.0];

    /// <summary>Lower RandomResizedCrop scale of each local view. Default 0.172, 0.143, 0.114, 0.086.</summary>
    public double[] LocalCropMinScales { get; set; } = [0.172, 0.143, 0.114, 0.086];

    /// <summary>Upper RandomResizedCrop scale of each local view. Default 0.86, 0.715, 0.571, 0.429.</summary>
    public double[] LocalCropMaxScales { get; set; } = [0.86, 0.715, 0.571, 0.429];

    /// <summary>
    /// The local views' sides: <see cref="LocalCropSizes"/> when given, else
    /// round(<see cref="ReferenceLocalCropRatios"/>[i] · <see cref="ImageSize"/>), at least 1.
    /// </summary>
    public int[] ResolvedLocalCropSizes() =>
        LocalCropSizes is { Length: > 0 } explicitSizes
            ? explicitSizes
            : ReferenceLocalCropRatios.Select(ratio => Math.Max(1, (int)Math.Round(ratio * ImageSize, MidpointRounding.AwayFromZero))).ToArray();
}
