using Hcsc.Clustering;
using Hcsc.Core.Hierarchy;
using Hcsc.Core.Options;
using Hcsc.Core.Queue;
using Hcsc.Core.Randomness;
using Hcsc.Losses;
using Hcsc.Models;
using Hcsc.Models.Backbones;
using Hcsc.Models.Optimization;
using Hcsc.Samples.ImageNetPretrain.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Benchmarks.Models;

/// <summary>The fixed set-up of the training-step parity check: sizes, optimiser and schedule (shared with the PyTorch side).</summary>
/// <param name="Steps">Training steps per run (MoCo and HCSC each).</param>
/// <param name="StepsPerEpoch">Steps between two learning-rate changes (the schedule is set per epoch).</param>
/// <param name="BaseLearningRate">lr for a batch of 256 (TrainingOptions.LearningRate); the rate used is lr · B / 256.</param>
/// <param name="Seed">Seeds the weights, the queue, the data and the generators.</param>
public sealed record TrainingStepParityConfig(int Steps, int StepsPerEpoch, double BaseLearningRate, long Seed)
{
    /// <summary>B, images per step.</summary>
    public int Batch => 32;

    /// <summary>Side of the square input views.</summary>
    public int ImageSize => 32;

    /// <summary>N, images in the synthetic data set (the hierarchy assigns each a cluster per level).</summary>
    public int SampleCount => 320;

    /// <summary>Pattern classes the synthetic images are drawn around, so clustering finds structure.</summary>
    public int Classes => 8;

    /// <summary>Base width of the small-stem ResNet-18.</summary>
    public int Width => 16;

    /// <summary>The model, queue and BN-split options (everything else at the library's defaults).</summary>
    public ModelOptions Model => new()
    {
        Arch = "resnet18",
        Dim = 64,
        Mlp = true,
        EncoderMomentum = EncoderMomentum,
        QueueLength = 256,
        BatchNormSplits = 8,
    };

    /// <summary>The objective: τ = 0.2 and the library's default switches.</summary>
    public ObjectiveOptions Objective => new() { Temperature = 0.2 };

    /// <summary>The optimiser and schedule (SGD momentum 0.9, weight decay 1e-4, cosine per epoch).</summary>
    public TrainingOptions Training => new()
    {
        Epochs = (Steps + StepsPerEpoch - 1) / StepsPerEpoch,
        BatchSize = Batch,
        LearningRate = BaseLearningRate,
        SgdMomentum = 0.9,
        WeightDecay = 1e-4,
        Cosine = true,
        Seed = Seed,
    };

    /// <summary>Prototypes per level of the fixed hierarchy, finest first.</summary>
    public int[] Clusters => [24, 12, 4];

    /// <summary>The state is also compared after this many steps, before float32 rounding is amplified by the dynamics.</summary>
    public int EarlySteps => Math.Min(3, Steps);

    /// <summary>m, the EMA momentum of the key encoder. Default 0.999.</summary>
    public double EncoderMomentum { get; init; } = 0.999;
}

/// <summary>What one .NET run produced: the loss of every step, the final state, and every random draw it made.</summary>
public sealed class TrainingStepParityOutcome : IDisposable
{
    /// <summary>Total loss per step (before the step's update).</summary>
    public required double[] Losses { get; init; }

    /// <summary>Final state: <c>encoder_q.*</c>, <c>encoder_k.*</c> (parameters and buffers) and <c>queue</c> [Q, d].</summary>
    public required Dictionary<string, Tensor> Final { get; init; }

    /// <summary>The same after <see cref="TrainingStepParityConfig.EarlySteps"/> steps.</summary>
    public required Dictionary<string, Tensor> Early { get; init; }

    /// <summary>The key-batch permutation of every step [S, B] (row i of the shuffled batch is view2[perm[i]]).</summary>
    public required Tensor Permutations { get; init; }

    /// <summary>ICSC masks [S, L, B, Q] as 0/1 float32 (1 = kept); null for MoCo.</summary>
    public Tensor? InstanceMasks { get; init; }

    /// <summary>PCSC masks per level [S, B, k_l] as 0/1 float32 (1 = selected candidate); null for MoCo.</summary>
    public Tensor[]? PrototypeMasks { get; init; }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var tensor in Final.Values.Concat(Early.Values))
        {
            tensor.Dispose();
        }

        Permutations.Dispose();
        InstanceMasks?.Dispose();
        foreach (var mask in PrototypeMasks ?? [])
        {
            mask.Dispose();
        }
    }
}

/// <summary>
/// The .NET side of <see cref="TrainingStepParityBenchmark"/>: builds the shared problem (initial weights, initial queue,
/// fixed input views, a hierarchy clustered once) and runs the step loop of
/// <c>samples/ImageNetPretrain/Training/PretrainRun.cs</c> on it (model Forward with split BN, HcscObjective, SGD,
/// enqueue, selection-cache refresh and update, learning rate per epoch), recording every random draw.
/// </summary>
public sealed class TrainingStepParityRun : IDisposable
{
    private readonly TrainingStepParityConfig _config;
    private readonly Dictionary<string, Tensor> _initialModel;
    private readonly HierarchicalKMeansResult _clustering;

    /// <summary>Builds the shared problem from <paramref name="config"/> (seeded, so the same every time).</summary>
    public TrainingStepParityRun(TrainingStepParityConfig config)
    {
        _config = config;
        using var random = RandomSources.SeedEverything(config.Seed);   // as PretrainRun: global seed for the weights
        using (var model = BuildModel())
        {
            _initialModel = model.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone());
        }

        using (var queue = new KeyQueue(config.Model.QueueLength, config.Model.Dim, CPU, random.Generator))
        {
            InitialQueue = queue.Keys.clone();
        }

        (Views1, Views2, BatchIndices, Images) = MakeData(config);
        using (var model = BuildModel())
        {
            Load(model, _initialModel);
            using var noGrad = no_grad();
            using var embeddings = model.Embed(Images);                   // key encoder, eval mode, [N, d]
            var clustering = new ClusteringOptions
            {
                NumClusters = config.Clusters,
                Iterations = 20,
                Restarts = 2,
                MinPointsPerCentroid = 0,
            };
            _clustering = new HierarchicalKMeans(clustering, config.Objective.Temperature).Fit(embeddings);
        }
    }

    /// <summary>The fixed hierarchy used by every HCSC step.</summary>
    public ClusterHierarchy Hierarchy => _clustering.Hierarchy;

    /// <summary>The queue's initial random unit keys [Q, d].</summary>
    public Tensor InitialQueue { get; }

    /// <summary>Query views of every step [S, B, 3, H, W].</summary>
    public Tensor Views1 { get; }

    /// <summary>Key views of every step [S, B, 3, H, W].</summary>
    public Tensor Views2 { get; }

    /// <summary>Dataset indices of every step [S, B] int64.</summary>
    public Tensor BatchIndices { get; }

    /// <summary>The synthetic images the hierarchy was clustered from [N, 3, H, W].</summary>
    public Tensor Images { get; }

    /// <summary>The initial model state (<c>encoder_q.*</c>, <c>encoder_k.*</c>), to export.</summary>
    public IReadOnlyDictionary<string, Tensor> InitialModel => _initialModel;

    /// <summary>
    /// Runs <see cref="TrainingStepParityConfig.Steps"/> steps from the initial state: plain MoCo InfoNCE when
    /// <paramref name="hcsc"/> is false, the HCSC objective (library defaults) with the fixed hierarchy otherwise.
    /// </summary>
    public TrainingStepParityOutcome Train(bool hcsc)
    {
        var c = _config;
        var training = c.Training;
        var modelOptions = c.Model;
        var hierarchy = hcsc ? Hierarchy : null;
        int levels = Hierarchy.LevelCount;

        using var model = BuildModel();
        Load(model, _initialModel);
        using var optimizer = new ExplicitScalarSgd(model.TrainableParameters(), training.ScaledLearningRate, training.SgdMomentum, weightDecay: training.WeightDecay);
        using var queue = new SelectiveKeyQueue(modelOptions.QueueLength, modelOptions.Dim, CPU);
        using (var unfilled = (-1L).ToScalar())
        using (var noIndices = full(new long[] { modelOptions.QueueLength }, unfilled, dtype: ScalarType.Int64))
        {
            queue.Restore(InitialQueue, noIndices, 0);   // the initial random keys, exported to the PyTorch side
        }

        using var objective = new HcscObjective(c.Objective);
        // The generators of PretrainRun; the shuffle generator has a twin so that its permutations can be exported.
        using var maskGenerator = new Generator(unchecked((ulong)training.Seed) + 1);
        using var shuffleGenerator = new Generator(unchecked((ulong)training.Seed) + 2);
        using var shuffleTwin = new Generator(unchecked((ulong)training.Seed) + 2);

        var losses = new double[c.Steps];
        Dictionary<string, Tensor>? early = null;
        var permutations = zeros(new long[] { c.Steps, c.Batch }, dtype: ScalarType.Int64);
        var instanceMasks = hcsc ? zeros(new long[] { c.Steps, levels, c.Batch, modelOptions.QueueLength }) : null;
        var prototypeMasks = hcsc ? Hierarchy.Levels.Select(l => zeros(new long[] { c.Steps, c.Batch, l.ClusterCount })).ToArray() : null;
        model.train();
        for (int step = 0; step < c.Steps; step++)
        {
            if (step % c.StepsPerEpoch == 0)
            {
                // PretrainRun.TrainEpoch: the learning rate is set once per epoch, the queue given the hierarchy after each clustering.
                int epoch = step / c.StepsPerEpoch;
                double lr = LearningRateSchedule.At(epoch, training.Epochs, training.ScaledLearningRate, training.Cosine);
                foreach (var group in optimizer.ParamGroups)
                {
                    group.LearningRate = lr;
                }

                queue.UseHierarchy(hierarchy);
            }

            using var scope = NewDisposeScope();
            permutations[step].copy_(randperm(c.Batch, generator: shuffleTwin));   // the draw HcscModel makes next
            var view1 = Views1[step];
            var view2 = Views2[step];
            var indices = BatchIndices[step];

            // PretrainStep.Run.
            var (q, k) = model.Forward(view1, view2, shuffleGenerator);
            var loss = objective.Compute(q, k, queue, indices, hierarchy, maskGenerator);
            optimizer.zero_grad();
            loss.Total.backward();
            losses[step] = loss.Total.ToDouble();
            optimizer.step();
            queue.Enqueue(k.detach(), indices);

            for (int l = 0; hcsc && l < levels; l++)
            {
                instanceMasks![step][l].copy_(loss.InstanceMasks[l]);
                prototypeMasks![l][step].copy_(loss.PrototypeMasks[l]);
            }

            if (step + 1 == c.EarlySteps)
            {
                early = Snapshot(model, queue);
            }
        }

        return new TrainingStepParityOutcome
        {
            Losses = losses,
            Final = Snapshot(model, queue),
            Early = early!,
            Permutations = permutations,
            InstanceMasks = instanceMasks,
            PrototypeMasks = prototypeMasks,
        };
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var tensor in _initialModel.Values)
        {
            tensor.Dispose();
        }

        _clustering.Dispose();
        InitialQueue.Dispose();
        Views1.Dispose();
        Views2.Dispose();
        BatchIndices.Dispose();
        Images.Dispose();
    }

    private HcscModel BuildModel() => new(_config.Model, () => ResNet.Create(new ResNetOptions
    {
        Arch = _config.Model.Arch,
        SmallImageStem = true,
        BaseWidth = _config.Width,
    }));

    // Detached copies of the model's state and the queue's keys, outside any dispose scope.
    private static Dictionary<string, Tensor> Snapshot(HcscModel model, SelectiveKeyQueue queue)
    {
        var state = model.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone().DetachFromDisposeScope());
        state["queue"] = queue.Keys.clone().DetachFromDisposeScope();
        return state;
    }

    private static void Load(HcscModel model, IReadOnlyDictionary<string, Tensor> state)
    {
        using var noGrad = no_grad();
        foreach (var (name, tensor) in model.state_dict())
        {
            tensor.copy_(state[name]);
        }
    }

    // Images around one of `Classes` random patterns; per step a batch of distinct indices (a fresh permutation of the
    // data set every N / B steps) and two noisy views of each image (no augmentation: the views are fixed tensors).
    private static (Tensor Views1, Tensor Views2, Tensor Indices, Tensor Images) MakeData(TrainingStepParityConfig c)
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator(unchecked((ulong)c.Seed) + 10);
        using var imageNoise = 0.5.ToScalar();
        using var viewNoise = 0.3.ToScalar();
        long[] imageShape = [3, c.ImageSize, c.ImageSize];
        var patterns = randn([c.Classes, .. imageShape], generator: generator);
        using var count = c.SampleCount.ToScalar();
        using var classes = c.Classes.ToScalar();
        var labels = arange(count, dtype: ScalarType.Int64).remainder(classes);
        var images = patterns.index_select(0, labels).add_(randn([c.SampleCount, .. imageShape], generator: generator), imageNoise);
        int perPass = c.SampleCount / c.Batch;
        var indices = zeros(new long[] { c.Steps, c.Batch }, dtype: ScalarType.Int64);
        Tensor? order = null;
        for (int step = 0; step < c.Steps; step++)
        {
            using var stepScope = NewDisposeScope();
            if (step % perPass == 0)
            {
                order?.Dispose();
                order = randperm(c.SampleCount, generator: generator).DetachFromDisposeScope();   // a fresh pass over the data
            }

            indices[step].copy_(order!.narrow(0, (step % perPass) * c.Batch, c.Batch));
        }

        order?.Dispose();

        var batches = images.index_select(0, indices.flatten()).view([c.Steps, c.Batch, .. imageShape]);
        var views1 = batches.add(randn(batches.shape, generator: generator), viewNoise);
        var views2 = batches.add(randn(batches.shape, generator: generator), viewNoise);
        return (views1.MoveToOuterDisposeScope(), views2.MoveToOuterDisposeScope(), indices.MoveToOuterDisposeScope(), images.MoveToOuterDisposeScope());
    }
}
