using Hcsc.Core.Distributed;
using Hcsc.Core.Options;
using Hcsc.Core.Tensors;
using Hcsc.Models.Backbones;
using Hcsc.Models.Distributed;
using Hcsc.Models.Heads;
using Hcsc.Models.Momentum;
using Hcsc.Models.Normalization;
using Hcsc.Models.Optimization;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Models;

/// <summary>
/// The HCSC / MoCo v2 encoder pair. <c>encoder_q</c> is a backbone whose <c>fc</c> is the projection head
/// (<see cref="ProjectionHead"/>); <c>encoder_k</c> is a copy that never gets gradients and follows
/// <c>encoder_q</c> by EMA (<see cref="MomentumUpdate"/>). With <see cref="ModelOptions.BatchNormSplits"/> S &gt; 1
/// and a default-BN backbone, the key encoder uses <see cref="SplitBatchNorm2d"/> and its batch is shuffled
/// before and unshuffled after it (docs/method.md R5). State-dict names are MoCo's (<c>encoder_q.conv1.weight</c>,
/// <c>encoder_k.fc.0.weight</c>, …), so a checkpoint's <c>module.</c>-stripped state dict matches.
/// </summary>
public sealed class HcscModel : nn.Module
{
    private readonly ResNet encoder_q;
    private readonly ResNet encoder_k;
    private FlatParameters? _packedQuery;
    private FlatParameters? _packedKey;

    /// <summary>Builds both encoders.</summary>
    /// <param name="options">Dim (d), Mlp, EncoderMomentum (m) and BatchNormSplits (S) are used; all of it is validated (<see cref="HcscOptionsValidator.Problems(ModelOptions)"/>).</param>
    /// <param name="backboneFactory">Makes a fresh backbone; called for the query encoder, and again for the key encoder when it cannot be derived from the query's options.</param>
    /// <exception cref="ArgumentException">The options are invalid; the message lists every problem.</exception>
    public HcscModel(ModelOptions options, Func<ResNet> backboneFactory) : base(nameof(HcscModel))
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(backboneFactory);
        HcscOptionsValidator.ThrowIfInvalid(HcscOptionsValidator.Problems(options), nameof(options));
        Dim = options.Dim;
        Momentum = options.EncoderMomentum;
        BatchNormSplits = options.BatchNormSplits;

        encoder_q = backboneFactory() ?? throw new ArgumentException("The backbone factory returned null.", nameof(backboneFactory));
        ShuffledKeyBatchNorm = BatchNormSplits > 1 && encoder_q.Options.NormLayer is null;
        encoder_k = ShuffledKeyBatchNorm
            ? ResNet.Create(encoder_q.Options with { NormLayer = channels => new SplitBatchNorm2d(channels, BatchNormSplits) })
            : backboneFactory();
        if (ReferenceEquals(encoder_k, encoder_q))
        {
            throw new ArgumentException("The backbone factory must return a new backbone on every call.", nameof(backboneFactory));
        }

        encoder_q.ReplaceHead(ProjectionHead.Create(encoder_q.FeatureDim, Dim, options.Mlp));
        encoder_k.ReplaceHead(ProjectionHead.Create(encoder_k.FeatureDim, Dim, options.Mlp));
        RegisterComponents();

        // The key encoder starts as an exact copy (parameters and buffers) and never gets gradients.
        using var noGrad = no_grad();
        var source = encoder_q.state_dict();
        foreach (var (name, tensor) in encoder_k.state_dict())
        {
            tensor.copy_(source[name]);
        }

        foreach (var parameter in encoder_k.parameters())
        {
            parameter.requires_grad = false;
        }
    }

    /// <summary>d, the embedding size.</summary>
    public int Dim { get; }

    /// <summary>m, the EMA momentum of the key encoder.</summary>
    public double Momentum { get; }

    /// <summary>S, the BN splits of the key encoder in training mode.</summary>
    public int BatchNormSplits { get; }

    /// <summary>Whether the key encoder uses split-batch BN with the key batch shuffled around it.</summary>
    public bool ShuffledKeyBatchNorm { get; }

    /// <summary>f_q: backbone with the projection head as <c>fc</c>. Its parameters are the ones to optimise.</summary>
    public ResNet QueryEncoder => encoder_q;

    /// <summary>f_k: the momentum encoder (no gradients).</summary>
    public ResNet KeyEncoder => encoder_k;

    /// <summary>
    /// What would make batch norm unable to train at these sizes, empty when nothing: in training mode each BN
    /// layer needs at least two values per channel to estimate a variance, and the last stage has the fewest —
    /// B·s² in the query encoder and (B / S)·s² in the key encoder's split BN, s = <see cref="ResNet.FeatureMapSize"/>.
    /// With one value the running variance becomes non-finite and every embedding NaN after the first epoch
    /// (PyTorch refuses such a batch: "Expected more than 1 value per channel when training").
    /// </summary>
    /// <param name="batchSize">B, images per step.</param>
    /// <param name="imageSize">Side of the two global views.</param>
    /// <param name="localImageSizes">Sides of the multi-crop local views (query encoder only), if any.</param>
    public IReadOnlyList<string> BatchNormProblems(int batchSize, int imageSize, IEnumerable<int>? localImageSizes = null)
    {
        var problems = new List<string>();
        int keySplit = ShuffledKeyBatchNorm ? BatchNormSplits : 1;
        long Values(int images, int side) => (long)images * encoder_q.FeatureMapSize(side) * encoder_q.FeatureMapSize(side);
        if (batchSize / keySplit < 1 || Values(batchSize / keySplit, imageSize) < 2)
        {
            int side = encoder_q.FeatureMapSize(imageSize);
            problems.Add(
                $"The key encoder's batch norm would see {Math.Max(0, batchSize / keySplit) * side * side} value(s) per channel in its last stage " +
                $"({batchSize} images / {keySplit} BN split(s), {side}x{side} feature map from {imageSize} px images); it needs at least 2. " +
                "Raise --batch-size or --image-size, or lower Model:BatchNormSplits (--set Model:BatchNormSplits=N).");
        }

        foreach (int side in (localImageSizes ?? []).Prepend(imageSize).Distinct())
        {
            if (Values(batchSize, side) < 2)
            {
                problems.Add(
                    $"The query encoder's batch norm would see {Values(batchSize, side)} value per channel in its last stage for {side} px views " +
                    $"(batch {batchSize}); it needs at least 2. Raise --batch-size or the view size.");
            }
        }

        return problems;
    }

    /// <summary>The parameters to give the optimiser (the query encoder's).</summary>
    public IEnumerable<TorchSharp.Modules.Parameter> TrainableParameters() => encoder_q.parameters();

    /// <summary>
    /// Packs each encoder's parameters into one flat buffer (<see cref="FlatParameters"/>) and returns the query
    /// encoder's, with its gradients, for <see cref="ExplicitScalarSgd(FlatParameters, double, double, double)"/>. From
    /// then on the EMA update is two kernels and the optimiser's step a handful, instead of several per parameter
    /// (about 1 000 launches a step for ResNet-50 on a GPU); the results are the same bit for bit. Call it once the model
    /// is on its device; moving the model afterwards is refused. Calling it again returns the same buffer.
    /// </summary>
    public FlatParameters PackParameters()
    {
        if (_packedQuery is null)
        {
            _packedQuery = FlatParameters.Pack(encoder_q.named_parameters(), packGradients: true);
            _packedKey = FlatParameters.Pack(encoder_k.named_parameters(), packGradients: false);
        }

        return _packedQuery;
    }

    /// <summary>
    /// One training forward: without gradient, the EMA update θ_k ← m·θ_k + (1 − m)·θ_q and then
    /// k = normalize(f_k(view2)) [B, d]; and q = normalize(f_q(view1)) [B, d] with gradient (θ_q is the same before and
    /// after the update, so the order does not change q). With split BN in training mode the
    /// key batch is permuted with <paramref name="generator"/> before f_k and put back in order after, so k[n]
    /// belongs to view2[n]; B must then be a multiple of S.
    /// </summary>
    /// <param name="view1">Query images [B, C, H, W].</param>
    /// <param name="view2">Key images [B, C, H', W'].</param>
    /// <param name="generator">Random source of the shuffle (a CPU generator), or <c>null</c> for the global one.</param>
    public (Tensor Query, Tensor Key) Forward(Tensor view1, Tensor view2, Generator? generator = null) =>
        ForwardDataParallel(view1, view2, generator, SingleProcessCollectives.Instance, shuffleAcrossRanks: false);

    /// <summary>
    /// Data-parallel <see cref="Forward(Tensor, Tensor, Generator?)"/>: <paramref name="view1"/> and
    /// <paramref name="view2"/> are this rank's strided shard of the global batch (<see cref="Distributed.StridedShards"/>:
    /// rows rank, rank + n, …). Returns this rank's queries and keys, in the shard's row order. With
    /// <paramref name="shuffleAcrossRanks"/> the key batch is shuffled over the ranks as MoCo's
    /// <c>_batch_shuffle_ddp</c> does: the key views gathered into the global batch, one permutation drawn from
    /// <paramref name="generator"/> (the same draw on every rank, which must hold generators in the same state), each
    /// rank's key encoder run on its strided shard of the permuted batch, the keys gathered and un-permuted. With
    /// S / n batch-norm splits per rank this is exactly one process's <see cref="Forward(Tensor, Tensor, Generator?)"/>
    /// with S splits on the global batch (up to float reduction order). Collective when
    /// <paramref name="collectives"/> has more than one rank; with one it is <see cref="Forward(Tensor, Tensor, Generator?)"/>.
    /// </summary>
    /// <param name="view1">This rank's query views [b, C, H, W].</param>
    /// <param name="view2">This rank's key views [b, C, H, W].</param>
    /// <param name="generator">Draws the global permutation (the same state on every rank).</param>
    /// <param name="collectives">The group of ranks.</param>
    /// <param name="shuffleAcrossRanks">Shuffle the key batch over the ranks before the key encoder (MoCo's shuffle BN). With one process the model decides: it shuffles around its split BN (<see cref="ShuffledKeyBatchNorm"/>).</param>
    /// <returns>This rank's L2-normalised queries (with autograd) and keys (without), [b, d] each.</returns>
    public (Tensor Query, Tensor Key) ForwardDataParallel(Tensor view1, Tensor view2, Generator? generator, ICollectives collectives, bool shuffleAcrossRanks)
    {
        ArgumentNullException.ThrowIfNull(collectives);
        RequireTwoViews(view1, view2);

        using var scope = NewDisposeScope();
        Tensor k;
        using (no_grad())
        {
            // Keys first: their transient activations are gone before the query's graph is built (lower peak memory).
            UpdateKeyEncoder();
            bool shuffle = encoder_k.training && (collectives.Size > 1 ? shuffleAcrossRanks : ShuffledKeyBatchNorm);
            k = nn.functional.normalize(shuffle ? ShuffledKeyForward(view2, generator, collectives) : encoder_k.forward(view2), dim: 1); // [b, d]
        }

        var q = nn.functional.normalize(encoder_q.forward(view1), dim: 1);   // [b, d]
        return (q.MoveToOuterDisposeScope(), k.MoveToOuterDisposeScope());
    }

    /// <summary>Query embeddings of local (multi-crop) views: each [B_v, C, H_v, W_v] → normalize(f_q(v)) [B_v, d], with gradient.</summary>
    public IReadOnlyList<Tensor> ForwardLocal(IReadOnlyList<Tensor> localViews)
    {
        ArgumentNullException.ThrowIfNull(localViews);
        var result = new List<Tensor>(localViews.Count);
        foreach (var view in localViews)
        {
            using var scope = NewDisposeScope();
            result.Add(nn.functional.normalize(encoder_q.forward(view), dim: 1).MoveToOuterDisposeScope());
        }

        return result;
    }

    /// <summary>
    /// Embeddings for clustering: the key encoder in eval mode (BN running statistics), no gradient,
    /// images [B, C, H, W] → normalize(f_k(images)) [B, d]. The encoder's mode is restored afterwards.
    /// </summary>
    public Tensor Embed(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        return InEvalMode(encoder_k, () =>
        {
            using var scope = NewDisposeScope();
            return nn.functional.normalize(encoder_k.forward(images), dim: 1).MoveToOuterDisposeScope();
        });
    }

    /// <summary>
    /// Backbone features for kNN and the linear probe: the query encoder's pooled features before the projection
    /// head, eval mode, no gradient, images [B, C, H, W] → [B, F] (not normalised). The mode is restored afterwards.
    /// </summary>
    public Tensor BackboneFeatures(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        return InEvalMode(encoder_q, () => encoder_q.Features(images));
    }

    // Runs `compute` with `encoder` in eval mode and without gradient, then restores the encoder's mode.
    private static Tensor InEvalMode(ResNet encoder, Func<Tensor> compute)
    {
        var wasTraining = encoder.training;
        encoder.eval();
        try
        {
            using var noGrad = no_grad();
            return compute();
        }
        finally
        {
            encoder.train(wasTraining);
        }
    }

    /// <inheritdoc />
    protected override void _toEpilog(ScalarType? dtype, Device? device, bool non_blocking)
    {
        var current = _packedQuery?.Values;
        if (current is not null && ((dtype is { } t && t != current.dtype) || (device is not null && !DeviceEquality.SameDevice(device, current.device))))
        {
            throw new InvalidOperationException(
                $"The model's parameters are packed on {current.device} as {current.dtype} (PackParameters); moving it would unpack them. Move the model first, then pack.");
        }

        base._toEpilog(dtype, device, non_blocking);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _packedQuery?.Dispose();
            _packedKey?.Dispose();
        }

        base.Dispose(disposing);
    }

    private void UpdateKeyEncoder()
    {
        if (_packedQuery is not null)
        {
            MomentumUpdate.Apply(_packedQuery, _packedKey!, Momentum);
        }
        else
        {
            MomentumUpdate.Apply(encoder_q, encoder_k, Momentum);
        }
    }

    // MoCo's shuffle BN: the key views of all ranks gathered into the global batch [B, …], one permutation drawn from
    // the generator (alike on every rank), each rank's key encoder run on its strided shard of the permuted batch, the
    // outputs gathered and put back in order, and this rank's rows returned: row t is f_k(view2[t]). One process: the
    // whole batch, permuted around its split BN.
    private Tensor ShuffledKeyForward(Tensor view2, Generator? generator, ICollectives collectives)
    {
        int n = collectives.Size, rank = collectives.Rank;
        var global = StridedShards.Gather(collectives, view2);                              // [B, C, H, W]
        if (ShuffledKeyBatchNorm && global.shape[0] / n % BatchNormSplits != 0)
        {
            throw new ArgumentException(
                $"Split-batch BN with {BatchNormSplits} splits needs a batch size that is a multiple of {BatchNormSplits}; got {view2.Describe()}.", nameof(view2));
        }

        var permutation = randperm(global.shape[0], generator: generator).to(global.device); // [B]
        var mine = StridedShards.Take(global.index_select(0, permutation), rank, n);
        var shuffled = StridedShards.Gather(collectives, encoder_k.forward(mine));         // row i: f_k(global[perm[i]])
        var unshuffled = zeros_like(shuffled).index_copy_(0, permutation, shuffled);        // row perm[i] gets it back
        return StridedShards.Take(unshuffled, rank, n);
    }

    private static void RequireTwoViews(Tensor view1, Tensor view2)
    {
        ArgumentNullException.ThrowIfNull(view1);
        ArgumentNullException.ThrowIfNull(view2);
        if (view1.dim() != 4 || view2.dim() != 4 || view1.shape[0] != view2.shape[0])
        {
            throw new ArgumentException($"Expected two views [B, C, H, W] with the same B; got {view1.Describe()} and {view2.Describe()}.");
        }
    }
}
