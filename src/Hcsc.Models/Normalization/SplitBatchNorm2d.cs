using Hcsc.Core.Tensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Hcsc.Models.Normalization;

/// <summary>
/// Split-batch BatchNorm (the one-device stand-in for MoCo's shuffled BN across GPUs, docs/method.md R5).
/// In training mode the batch of B = S·b samples is normalised as S sub-batches of b samples each, split j
/// holding the samples n with n mod S = j; each split uses its own batch statistics, and the running
/// statistics are updated with the mean over splits of the per-split updates. In eval mode (or with S = 1)
/// it is exactly <c>BatchNorm2d</c> with the running statistics. Parameters and buffers are named like
/// <c>BatchNorm2d</c>'s (<c>weight</c>, <c>bias</c>, <c>running_mean</c>, <c>running_var</c>,
/// <c>num_batches_tracked</c>), so state dicts are interchangeable with it.
/// Input and output [B, C, H, W].
/// </summary>
public sealed class SplitBatchNorm2d : Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly Parameter bias;
    private readonly Tensor running_mean;
    private readonly Tensor running_var;
    private readonly Tensor num_batches_tracked;

    /// <summary>Creates the layer.</summary>
    /// <param name="numFeatures">Channels C.</param>
    /// <param name="numSplits">Sub-batches S in training mode; the batch size must be a multiple of it.</param>
    /// <param name="eps">Added to the variance, as in <c>BatchNorm2d</c>.</param>
    /// <param name="momentum">Running-statistics momentum, as in <c>BatchNorm2d</c>.</param>
    public SplitBatchNorm2d(long numFeatures, int numSplits, double eps = 1e-5, double momentum = 0.1)
        : base(nameof(SplitBatchNorm2d))
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(numFeatures, 1L);
        ArgumentOutOfRangeException.ThrowIfLessThan(numSplits, 1);
        NumFeatures = numFeatures;
        NumSplits = numSplits;
        Eps = eps;
        Momentum = momentum;
        weight = new Parameter(ones(numFeatures));
        bias = new Parameter(zeros(numFeatures));
        running_mean = zeros(numFeatures);
        running_var = ones(numFeatures);
        num_batches_tracked = zeros(Array.Empty<long>(), dtype: ScalarType.Int64);
        register_parameter(nameof(weight), weight);
        register_parameter(nameof(bias), bias);
        register_buffer(nameof(running_mean), running_mean);
        register_buffer(nameof(running_var), running_var);
        register_buffer(nameof(num_batches_tracked), num_batches_tracked);
    }

    /// <summary>Channels C.</summary>
    public long NumFeatures { get; }

    /// <summary>Sub-batches S in training mode.</summary>
    public int NumSplits { get; }

    /// <summary>Variance epsilon.</summary>
    public double Eps { get; }

    /// <summary>Running-statistics momentum.</summary>
    public double Momentum { get; }

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.dim() != 4 || input.shape[1] != NumFeatures)
        {
            throw new ArgumentException($"Expected input [B, {NumFeatures}, H, W]; got {input.Describe()}.", nameof(input));
        }

        // Buffers are reached through the registry so that module.to(device) moves are respected.
        var mean = get_buffer(nameof(running_mean))!;
        var variance = get_buffer(nameof(running_var))!;
        var w = get_parameter(nameof(weight))!;
        var b = get_parameter(nameof(bias))!;
        if (training)
        {
            using (no_grad())
            {
                // Explicit value and alpha, alive for the call (see MomentumUpdate): add_(Scalar) alone would make an implicit alpha 1.
                using var one = 1.ToScalar();
                get_buffer(nameof(num_batches_tracked))!.add_(one, one);
            }
        }

        if (!training || NumSplits == 1)
        {
            return functional.batch_norm(input, mean, variance, w, b, training, Momentum, Eps);
        }

        var batch = input.shape[0];
        if (batch % NumSplits != 0)
        {
            throw new ArgumentException(
                $"SplitBatchNorm2d with {NumSplits} splits needs a batch size that is a multiple of {NumSplits}; got {input.Describe()}.", nameof(input));
        }

        using var scope = NewDisposeScope();
        var channels = NumFeatures;
        // [B, C, H, W] -> [B/S, S·C, H, W]: sample n = a·S + j lands in row a, channels j·C … j·C + C − 1.
        var grouped = input.reshape(batch / NumSplits, NumSplits * channels, input.shape[2], input.shape[3]);
        var splitMean = mean.repeat(NumSplits);      // [S·C]
        var splitVar = variance.repeat(NumSplits);   // [S·C]
        var output = functional.batch_norm(grouped, splitMean, splitVar, w.repeat(NumSplits), b.repeat(NumSplits), true, Momentum, Eps);
        using (no_grad())
        {
            mean.copy_(splitMean.view(NumSplits, channels).mean([0]));
            variance.copy_(splitVar.view(NumSplits, channels).mean([0]));
        }

        return output.view(input.shape).MoveToOuterDisposeScope();
    }
}
