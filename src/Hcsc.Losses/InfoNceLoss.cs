using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Losses;

/// <summary>
/// MoCo's InfoNCE with a queue of negatives (docs/method.md §1; the loss before the first clustering, §6):
/// <code>
///   l_pos[n]    = q_n · k_n                 l_neg[n, j] = q_n · z_j
///   loss        = mean_n CE( [l_pos[n], l_neg[n, :]] / τ, target 0 )
/// </code>
/// Gradients flow into <c>query</c> only; <c>key</c> and <c>queue</c> are detached.
/// </summary>
/// <example><code>var loss = InfoNceLoss.Compute(q, k, queue, temperature: 0.2); // scalar</code></example>
public static class InfoNceLoss
{
    /// <summary>Computes the InfoNCE loss.</summary>
    /// <param name="query">L2-normalised queries q <c>[B, d]</c>, with gradient.</param>
    /// <param name="key">L2-normalised keys k <c>[B, d]</c> (positives).</param>
    /// <param name="queue">Negative keys z <c>[Q, d]</c>.</param>
    /// <param name="temperature">τ &gt; 0.</param>
    /// <returns>The mean loss, a scalar.</returns>
    public static Tensor Compute(Tensor query, Tensor key, Tensor queue, double temperature)
    {
        IcscLoss.CheckQueryKeyQueue(query, key, queue, temperature);
        using var scope = NewDisposeScope();
        using var tau = temperature.ToScalar(); // explicit and alive: no implicitly converted Scalar temporary
        var positive = query.mul(key.detach()).sum(1).div(tau);           // [B]
        var negatives = query.mm(queue.detach().t()).div(tau);            // [B, Q]
        var logits = cat([positive.unsqueeze(1), negatives], 1);           // [B, 1 + Q]
        return logits.logsumexp(1).sub(positive).mean().MoveToOuterDisposeScope();
    }
}
