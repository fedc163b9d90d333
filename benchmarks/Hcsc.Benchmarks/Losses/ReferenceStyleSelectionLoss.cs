using Hcsc.Core.Hierarchy;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Benchmarks.Losses;

/// <summary>
/// The baseline: selection + loss written the way the reference implementation does it, recomputing every
/// step the Q × k_l softmax of every queue key over the prototypes and the k_l × k_{l+1} softmax of the
/// prototypes over their parents, then concatenating masked logits and calling cross-entropy per level
/// (docs/method.md R1 zero logits, R2 sum, R3 off-by-one aside: all candidates are used).
/// </summary>
internal static class ReferenceStyleSelectionLoss
{
    public static Tensor Step(Tensor query, Tensor key, Tensor queue, Tensor batchIndices, ClusterHierarchy hierarchy, double tau, Generator generator)
    {
        var lPos = query.mul(key).sum(1, keepdim: true);   // [B, 1]
        var lNeg = query.mm(queue.t());                    // [B, Q]
        long b = query.shape[0];
        var target = zeros(b, dtype: ScalarType.Int64);
        Tensor? instance = null;
        var prototype = new List<Tensor>();
        int levels = hierarchy.LevelCount;
        for (int l = 0; l < levels; l++)
        {
            var level = hierarchy.Levels[l];
            var labels = level.Assignments.index_select(0, batchIndices);
            Tensor mask;
            using (no_grad())
            {
                var logits = queue.mm(level.Prototypes.t()).div(level.Concentrations.clamp_min(1e-3));  // [Q, k]
                var probability = logits.softmax(1);                                                   // [Q, k]
                var accept = probability.index_select(1, labels).t().neg().add(1.0);                    // [B, Q]
                mask = bernoulli(accept.clamp(0.0, 0.999), generator: generator);
            }

            var selected = cat([lPos, lNeg.mul(mask)], 1).div(tau);
            var ce = nn.functional.cross_entropy(selected, target);
            instance = instance is null ? ce : instance.add(ce);

            // PCSC over all k_l prototypes; non-candidates (the batch's positives other than one's own) excluded.
            var scaled = level.Prototypes.div(level.Concentrations.unsqueeze(1));
            var protoLogits = query.mm(scaled.t());                                                     // [B, k]
            var candidates = ones(level.ClusterCount, dtype: ScalarType.Bool);
            candidates.index_fill_(0, labels, false);
            Tensor protoMask;
            using (no_grad())
            {
                if (l < levels - 1)
                {
                    var parentPhi = hierarchy.Levels[l + 1].Concentrations;
                    var rescaled = parentPhi.mul(tau).div(parentPhi.mean());
                    var parentProbability = level.SimilarityToParents!.div(rescaled).softmax(1);       // [k, k']
                    var parents = level.Parents!.index_select(0, labels);
                    var accept = parentProbability.index_select(1, parents).t().neg().add(1.0);        // [B, k]
                    protoMask = bernoulli(accept.clamp(1e-4, 0.999), generator: generator);
                }
                else
                {
                    protoMask = ones(b, level.ClusterCount);
                }
            }

            var positive = protoLogits.gather(1, labels.unsqueeze(1));
            var negatives = where(candidates.unsqueeze(0), protoLogits.mul(protoMask), full(1, double.NegativeInfinity));
            prototype.Add(nn.functional.cross_entropy(cat([positive, negatives], 1), target));
        }

        return instance!.add(stack(prototype).mean());
    }
}
