using Hcsc.Core.Options;
using Hcsc.Core.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Losses;

/// <summary>
/// The ICSC loss of one level (docs/method.md §3) for a given selection mask (drawn by
/// <see cref="InstanceSelector.SampleMask"/>, or your own):
/// <code>
///   l_pos[n] = q_n · k_n,   l_neg[n, j] = q_n · z_j
///   ICSC     = mean_n CE( [l_pos[n], l_neg[n, j] for selected j] / τ, target 0 )
/// </code>
/// An unselected negative is dropped from the softmax (<see cref="UnselectedNegativeHandling.Exclude"/>, the paper)
/// or enters with logit 0 (<see cref="UnselectedNegativeHandling.ZeroLogit"/>, the reference code, docs/method.md R1).
/// Gradients flow into <c>query</c> only.
/// </summary>
public static class IcscLoss
{
    /// <summary>Computes the ICSC loss of one level.</summary>
    /// <param name="query">L2-normalised queries q <c>[B, d]</c>, with gradient.</param>
    /// <param name="key">L2-normalised keys k <c>[B, d]</c>.</param>
    /// <param name="queue">Negative keys z <c>[Q, d]</c>.</param>
    /// <param name="mask">Selection <c>[B, Q]</c>: bool, or 0/1 in any floating dtype (1 = selected).</param>
    /// <param name="temperature">τ &gt; 0.</param>
    /// <param name="handling">How unselected negatives enter the softmax (docs/method.md R1).</param>
    /// <returns>The mean loss, a scalar.</returns>
    public static Tensor Compute(Tensor query, Tensor key, Tensor queue, Tensor mask, double temperature, UnselectedNegativeHandling handling)
    {
        CheckQueryKeyQueue(query, key, queue, temperature);
        ArgumentNullException.ThrowIfNull(mask);
        if (mask.dim() != 2 || mask.shape[0] != query.shape[0] || mask.shape[1] != queue.shape[0])
        {
            throw new ArgumentException($"{nameof(mask)} must be [B, Q] = [{query.shape[0]}, {queue.shape[0]}]; got {mask.Describe()}.", nameof(mask));
        }

        Guard.SameDevice(mask, nameof(mask), query, nameof(query));
        using var scope = NewDisposeScope();
        using var tau = temperature.ToScalar(); // explicit and alive: no implicitly converted Scalar temporary
        var positive = query.mul(key.detach()).sum(1).div(tau);           // [B]
        var negatives = query.mm(queue.detach().t()).div(tau);            // [B, Q]
        var (loss, _) = SelectiveCrossEntropy.PerSample(positive, negatives, mask, null, handling);
        return loss.mean().MoveToOuterDisposeScope();
    }

    internal static void CheckQueryKeyQueue(Tensor query, Tensor key, Tensor queue, double temperature)
    {
        Guard.Matrix(query, nameof(query), "[B, d]");
        Guard.Matrix(key, nameof(key), "[B, d]");
        Guard.Matrix(queue, nameof(queue), "[Q, d]");
        Guard.SameShape(key, nameof(key), query, nameof(query));
        Guard.SameDtypeAndDevice(key, nameof(key), query, nameof(query));
        Guard.SameDtypeAndDevice(queue, nameof(queue), query, nameof(query));
        Guard.EmbeddingSize(queue, nameof(queue), query.shape[1], $"{nameof(query)} {query.Describe()}");
        Guard.Temperature(temperature, nameof(temperature));
    }
}
