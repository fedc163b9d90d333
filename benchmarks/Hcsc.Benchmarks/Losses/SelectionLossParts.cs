using System.Diagnostics;
using Hcsc.Core.Hierarchy;
using Hcsc.Core.Options;
using Hcsc.Losses;
using Hcsc.Losses.Kernels;
using static TorchSharp.torch;

namespace Hcsc.Benchmarks.Losses;

/// <summary>
/// Where the cached step's time goes: each part of <see cref="HcscObjective"/>'s CPU path timed on its own
/// (median of repeated runs), with the same sizes as the step. The parts overlap nothing, so their sum is
/// close to the step minus small tensor operations.
/// </summary>
internal static class SelectionLossParts
{
    public static void Print(ClusterHierarchy hierarchy, Tensor query, Tensor key, Tensor queue, Tensor indices, QueueSelectionCache cache, double tau, int repeats)
    {
        long batch = query.shape[0];
        int levels = hierarchy.LevelCount;
        var queueT = queue.t();
        var labels = Enumerable.Range(0, levels).Select(l => hierarchy.Levels[l].Assignments.index_select(0, indices)).ToArray();
        var tables = Enumerable.Range(0, levels).Select(l => new ThresholdTable(cache.Thresholds[l], labels[l])).ToArray();
        var (masks, _) = BernoulliRows.Sample(tables, batch, new Generator(3));
        var logits = query.detach().mm(queueT).div(tau);
        var positive = query.detach().mul(key).sum(1).div(tau);
        var logitsLeaf = logits.clone().requires_grad_(true);
        var gradLogits = randn_like(logits);
        using var memo = PrototypeSelectionMemo.Create(hierarchy, tau, withThresholdTables: true);
        var weights = memo.PrototypeLogitWeights(query.dtype);
        var stackedLabels = stack(labels);
        var candidates = Enumerable.Range(0, levels).Select(l => PrototypeSelector.CandidateMask(labels[l], hierarchy.Levels[l], null)).ToArray();
        var candidateCounts = candidates.Select(c => c.sum().item<long>()).ToArray();
        var selection = cat(Enumerable.Range(0, levels).Select(l => candidates[l].unsqueeze(0).expand(batch, hierarchy.Levels[l].ClusterCount)).ToList(), 1);
        var prototypeLogits = query.detach().mm(weights).requires_grad_(true);
        var gradPrototypeLogits = randn_like(prototypeLogits);
        long pointer = 0;

        Console.WriteLine();
        Console.WriteLine("parts of the cached step, timed one by one (median ms):");
        Time("instance logits q·zᵀ/τ [B, Q] (matrix product)", repeats, () => query.detach().mm(queueT));
        Time("its backward dX·z (matrix product)", repeats, () => gradLogits.mm(queue));
        Time("instance masks of all levels (from cached thresholds)", repeats, () => BernoulliRows.Sample(tables, batch, new Generator(3)));
        Time("InfoNCE + ICSC of all levels, forward (kernel)", repeats, () =>
        {
            using var noGrad = no_grad();
            QueueCrossEntropy.Compute(logits, positive, masks, zeroLogit: true);
        });
        Time("InfoNCE + ICSC of all levels, forward + backward", repeats, () => QueueCrossEntropy.Compute(logitsLeaf, positive, masks, zeroLogit: true).Loss.sum().backward());
        Time("PCSC logits of all levels [B, Σk] (matrix product)", repeats, () => query.detach().mm(weights));
        Time("its backward (matrix product)", repeats, () => gradPrototypeLogits.mm(weights.t()));
        Time("PCSC of all levels, forward + backward (kernel)", repeats, () =>
            PrototypeContrast.Compute(prototypeLogits, stackedLabels, selection, memo.ClusterCounts, candidateCounts, UnselectedNegativeHandling.ZeroLogit).Loss.sum().backward());
        Time("prototype masks below the top level", repeats, () =>
        {
            for (int l = 0; l < levels - 1; l++)
            {
                PrototypeSelector.SampleFromThresholds(memo.RejectThresholds(l, labels[l], tau), batch, candidates[l], new Generator(5));
            }
        });
        Time("cache update of B keys, all levels", repeats, () =>
        {
            cache.Update(pointer, key);
            pointer = (pointer + batch) % queue.shape[0];
        });
    }

    private static void Time(string name, int repeats, Action part)
    {
        part();
        var times = new List<double>();
        for (int i = 0; i < repeats; i++)
        {
            using var scope = NewDisposeScope();
            var watch = Stopwatch.StartNew();
            part();
            times.Add(watch.Elapsed.TotalMilliseconds);
        }

        times.Sort();
        Console.WriteLine($"  {name,-56} {times[times.Count / 2],7:F2}");
    }
}
