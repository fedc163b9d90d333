using Hcsc.Core.Distributed;
using Hcsc.Core.Hierarchy;
using Hcsc.Losses;
using Hcsc.Models.Distributed;
using Hcsc.Samples.ImageNetPretrain.Loading;
using static TorchSharp.torch;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// One HCSC training step: MoCo's <c>train()</c> loop body with the HCSC objective (docs/method.md §1, §5). With several
/// ranks each runs it on its strided shard of the global batch; the model, the gradient averaging and the key gathering
/// handle a single process themselves, so the step reads the same either way.
/// </summary>
/// <param name="run">What the step changes: the model, optimiser, queue (and key bank), random sources, objective, guard.</param>
/// <param name="group">The ranks (<see cref="SingleProcessCollectives.Instance"/> for one process).</param>
/// <param name="shuffleKeysAcrossRanks">MoCo's shuffle BN over the ranks (<see cref="Hcsc.Models.HcscModel.ForwardDataParallel"/>).</param>
internal sealed class PretrainStep(RunState run, ICollectives group, bool shuffleKeysAcrossRanks)
{
    private readonly GradientAllReduce _gradients = new(group);
    private readonly DataParallelRanks _ranks = new(group);

    /// <summary>Called between backward and the gradient check with the 1-based epoch and step and the model (fault-injection tests).</summary>
    public Action<int, int, nn.Module>? AfterBackward { get; init; }

    /// <summary>
    /// Runs the step on <paramref name="batch"/> (which may be disposed once it returns) under the epoch's <paramref name="hierarchy"/> (null in the warm-up:
    /// InfoNCE), 0-based <paramref name="epoch"/> and <paramref name="step"/>; returns the
    /// loss parts, the loss (checked finite with every gradient before the optimiser used them, the mean over the ranks)
    /// and the spread of the queries (<see cref="EmbeddingSpread"/>).
    /// </summary>
    public (HcscLossResult Loss, double Value, Tensor Spread) Run(ImageBatch batch, ClusterHierarchy? hierarchy, int epoch, int step)
    {
        var images = new Tensor[batch.Views.Count];                                                            // [B, 3, S, S] each
        for (int v = 0; v < images.Length; v++)
        {
            images[v] = batch.View(v, run.Device); // non_blocking when pinned: the guard's host read below follows the copy
        }

        var indices = tensor(batch.Indices).to(run.Device);                                                   // [B]
        var (q, k) = run.Model.ForwardDataParallel(images[0], images[1], run.Generators.Shuffle, group, shuffleKeysAcrossRanks); // [B, d] each
        var locals = images.Length > 2 ? run.Model.ForwardLocal(images[2..]) : null;                          // multi-crop
        var loss = run.Objective.Compute(q, k, run.Queue, indices, hierarchy, run.Generators.Masks, locals);   // InfoNCE in the warm-up
        var (shownEpoch, shownStep) = (Numbering.Displayed(epoch), Numbering.Displayed(step));
        run.Optimizer.zero_grad();
        Backward(loss, shownEpoch, shownStep);
        AfterBackward?.Invoke(shownEpoch, shownStep, run.Model);
        _gradients.Average(run.Model.TrainableParameters());                                                  // a NaN reaches every rank
        double value = _ranks.Mean(run.Guard.Check(loss.Total, shownEpoch, shownStep));                        // one host read a step
        run.Optimizer.step();
        _gradients.AverageBuffers(run.Model);                                                                  // BN statistics, as split BN
        var (keys, keyIndices) = (StridedShards.Gather(group, k), StridedShards.Gather(group, indices));      // the global batch
        run.Queue.Enqueue(keys, keyIndices);                                                                   // and its selection cache
        run.Keys?.Record(keys, keyIndices);                                                                    // --cluster-on keys
        return (loss, value, EmbeddingSpread.Of(q));
    }

    private static void Backward(HcscLossResult loss, int shownEpoch, int shownStep)
    {
        try
        {
            loss.Backward();
        }
        catch (BackwardPassException e)
        {
            throw new InvalidOperationException($"Epoch {shownEpoch}, step {shownStep}: {e.Message}", e);
        }
    }
}
