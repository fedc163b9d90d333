using Hcsc.Core.Devices;
using Hcsc.Core.Hierarchy;
using Hcsc.Core.Options;
using Hcsc.Core.Queue;
using Hcsc.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Tests.Losses;

public class SelectiveKeyQueueTests
{
    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    private static Tensor UnitKeys(long rows, long dim, Generator g) =>
        nn.functional.normalize(randn(new[] { rows, dim }, generator: g), dim: 1);

    [Theory]
    [InlineData(QueueSelectionCacheMode.Thresholds, 3)]
    [InlineData(QueueSelectionCacheMode.Thresholds, 5)]
    [InlineData(QueueSelectionCacheMode.Normalisers, 3)]
    public void Enqueueing_keeps_the_cache_equal_to_a_fresh_refresh_through_several_wraps(QueueSelectionCacheMode mode, int batch)
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float32);
        using var queue = new SelectiveKeyQueue(7, 3, cacheMode: mode);
        queue.UseHierarchy(f.Hierarchy);
        var g = new Generator(4);
        for (int step = 0; step < 12; step++)                        // 36 or 60 keys through 7 slots: five wraps or more
        {
            queue.Enqueue(UnitKeys(batch, 3, g), randint(10, new long[] { batch }, generator: g));
            using var fresh = new QueueSelectionCache(mode);
            fresh.Refresh(f.Hierarchy, queue.Keys);
            var cache = queue.Cache!;
            for (int l = 0; l < 3; l++)
            {
                // Both are log-sum-exps (and softmax probabilities) over ≤ 5 logits z·c/max(φ, 1e-3) ≤ 1000 of width 3,
                // computed by matrix products of other shapes, so in other orders.
                double tolerance = FloatBounds.Softmax(3, 5, 1000, FloatBounds.Float32);
                cache.LogNormalisers[l].allclose(fresh.LogNormalisers[l], rtol: 0, atol: tolerance).Should().BeTrue($"step {step}, level {l} normalisers");
                if (mode == QueueSelectionCacheMode.Thresholds)
                {
                    cache.Thresholds[l].allclose(fresh.Thresholds[l], rtol: 0, atol: tolerance).Should().BeTrue($"step {step}, level {l} thresholds");
                }
            }
        }

        queue.Cache!.Thresholds.Should().HaveCount(mode == QueueSelectionCacheMode.Thresholds ? 3 : 0);
    }

    [Fact]
    public void Restore_and_a_new_hierarchy_recompute_the_whole_cache()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float32);
        using var other = new LossFixture(ScalarType.Float32, seed: 99);
        using var queue = new SelectiveKeyQueue(7, 3);
        queue.UseHierarchy(f.Hierarchy);
        queue.Restore(f.Queue, arange(7L), 5);
        AssertFresh(queue);
        queue.UseHierarchy(other.Hierarchy);
        queue.Hierarchy.Should().BeSameAs(other.Hierarchy);
        AssertFresh(queue);

        static void AssertFresh(SelectiveKeyQueue queue)
        {
            using var fresh = new QueueSelectionCache();
            fresh.Refresh(queue.Hierarchy!, queue.Keys);
            for (int l = 0; l < 3; l++)
            {
                Same(queue.Cache!.Thresholds[l], fresh.Thresholds[l]).Should().BeTrue($"level {l}");
            }
        }
    }

    [Fact]
    public void Without_a_hierarchy_the_objective_is_InfoNCE_and_enqueueing_needs_no_cache()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float32);
        using var queue = new SelectiveKeyQueue(7, 3);
        queue.Restore(f.Queue, arange(7L), 0);
        queue.UseHierarchy(f.Hierarchy);
        queue.UseHierarchy(null);
        queue.Hierarchy.Should().BeNull();
        queue.Cache.Should().BeNull();

        using var objective = new HcscObjective(ObjectiveOptions.Reference());
        var viaQueue = objective.Compute(f.Query, f.Key, queue, f.BatchIndices, hierarchy: null, new Generator(3));
        var raw = objective.Compute(f.Query, f.Key, f.Queue, f.BatchIndices, null, new Generator(3));
        viaQueue.Instance.Should().BeEmpty();
        viaQueue.Prototype.Should().BeEmpty();
        viaQueue.Total.item<float>().Should().Be(raw.Total.item<float>());

        queue.Enqueue(f.Key, f.BatchIndices).Should().Be(0);          // no cache to keep
        queue.UseHierarchy(f.Hierarchy);
        using var fresh = new QueueSelectionCache();
        fresh.Refresh(f.Hierarchy, queue.Keys);
        Same(queue.Cache!.Thresholds[0], fresh.Thresholds[0]).Should().BeTrue();
    }

    [Fact]
    public void A_hierarchy_disposed_while_the_queue_uses_it_is_named_with_the_order_to_follow()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float32);
        using var queue = new SelectiveKeyQueue(7, 3, generator: new Generator(1));
        var clustering = ClusterHierarchy.FromTensors(
            f.Hierarchy.Levels.Select(l => l.Prototypes).ToList(), f.Hierarchy.Levels.Select(l => l.Assignments).ToList(),
            f.Hierarchy.Levels.Select(l => l.Concentrations).ToList(), f.Hierarchy.Levels.Where(l => l.Parents is not null).Select(l => l.Parents!).ToList());
        queue.UseHierarchy(clustering);
        clustering.Dispose(); // the mistake: the old result disposed before the queue was given the new one
        using var objective = new HcscObjective();
        objective.Invoking(o => o.Compute(f.Query, f.Key, queue, f.BatchIndices, clustering, new Generator(2)))
            .Should().Throw<ObjectDisposedException>().WithMessage("*disposed while it is still in use*queue.UseHierarchy(next)*before disposing the old result*");
        queue.Invoking(q => q.Enqueue(UnitKeys(2, 3, new Generator(3)), tensor(new long[] { 0, 1 })))
            .Should().Throw<ObjectDisposedException>().WithMessage("*UseHierarchy(next) before disposing the old result*");
        queue.UseHierarchy(null);
        queue.Invoking(q => q.Enqueue(UnitKeys(2, 3, new Generator(3)), tensor(new long[] { 0, 1 }))).Should().NotThrow();
    }

    [Fact]
    public void The_tensor_path_keeps_the_same_selection_cache_as_the_host_kernels()
    {
        // The cache's columns are written by the ThresholdColumns kernel on the host path and by tensor operations on
        // the GPU's path (KernelPath.Tensor); through several wraps both must hold the same normalisers and thresholds.
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float32);
        using var host = new SelectiveKeyQueue(7, 3, generator: new Generator(1));        // the same initial keys
        using var tensorPath = new SelectiveKeyQueue(7, 3, generator: new Generator(1));
        host.UseHierarchy(f.Hierarchy);
        using (KernelSelection.Use(KernelPath.Tensor))
        {
            tensorPath.UseHierarchy(f.Hierarchy);
        }

        var g = new Generator(4);
        double tolerance = FloatBounds.Softmax(3, 5, 1000, FloatBounds.Float32); // 5 logits ≤ 1000, width 3
        for (int step = 0; step < 6; step++)
        {
            var keys = UnitKeys(3, 3, g);
            var indices = randint(10, new long[] { 3 }, generator: g);
            host.Enqueue(keys, indices);
            using (KernelSelection.Use(KernelPath.Tensor))
            {
                tensorPath.Enqueue(keys, indices);
            }

            for (int l = 0; l < 3; l++)
            {
                tensorPath.Cache!.LogNormalisers[l].allclose(host.Cache!.LogNormalisers[l], rtol: 0, atol: tolerance).Should().BeTrue($"step {step}, level {l} normalisers");
                tensorPath.Cache.Thresholds[l].allclose(host.Cache.Thresholds[l], rtol: 0, atol: tolerance).Should().BeTrue($"step {step}, level {l} thresholds");
            }
        }
    }

    [Theory]
    [InlineData(QueueSelectionCacheMode.Thresholds)]
    [InlineData(QueueSelectionCacheMode.Normalisers)]
    public void The_objective_through_the_queue_equals_the_raw_path_with_a_cache_kept_by_hand(QueueSelectionCacheMode mode)
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float32, batch: 4, queueLength: 7);
        using var selective = new SelectiveKeyQueue(7, 3, cacheMode: mode);
        using var plain = new KeyQueue(7, 3);
        using var cache = new QueueSelectionCache(mode);
        selective.Restore(f.Queue, arange(7L), 0);
        plain.Restore(f.Queue, arange(7L), 0);
        selective.UseHierarchy(f.Hierarchy);
        cache.Refresh(f.Hierarchy, plain.Keys);
        using var objective = new HcscObjective(ObjectiveOptions.Reference());
        using var objectiveByHand = new HcscObjective(ObjectiveOptions.Reference());
        var g = new Generator(8);
        for (int step = 0; step < 5; step++)                         // 20 keys through 7 slots
        {
            var keys = UnitKeys(4, 3, g);
            var viaQueue = objective.Compute(f.Query, keys, selective, f.BatchIndices, f.Hierarchy, new Generator((ulong)step));
            var byHand = objectiveByHand.Compute(f.Query, keys, plain.Keys, f.BatchIndices, f.Hierarchy, new Generator((ulong)step), cache);
            var uncached = objective.Compute(f.Query, keys, plain.Keys, f.BatchIndices, f.Hierarchy, new Generator((ulong)step));
            viaQueue.Total.item<float>().Should().Be(byHand.Total.item<float>(), $"step {step}");
            // At most 8 terms, each over d + Q + k_0 + 1 = 16 logits ≤ 1/φ_min = 2000 in size.
            viaQueue.Total.item<float>().Should().BeApproximately(uncached.Total.item<float>(), (float)(8 * FloatBounds.Sum(16, 2000, FloatBounds.Float32)), $"step {step}");
            for (int l = 0; l < 3; l++)
            {
                Same(viaQueue.InstanceMasks[l], byHand.InstanceMasks[l]).Should().BeTrue($"step {step}, level {l}");
                Same(viaQueue.PrototypeMasks[l], byHand.PrototypeMasks[l]).Should().BeTrue($"step {step}, level {l}");
            }

            long slot = plain.Enqueue(keys, f.BatchIndices);
            cache.Update(slot, keys);
            selective.Enqueue(keys, f.BatchIndices).Should().Be(slot);
            Same(selective.Keys, plain.Keys).Should().BeTrue();
            Same(selective.Indices, plain.Indices).Should().BeTrue();
        }
    }

    [Fact]
    public void A_hierarchy_that_does_not_fit_is_refused_and_the_old_one_kept()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float32);
        using var wide = new LossFixture(ScalarType.Float32, dim: 4);
        using var queue = new SelectiveKeyQueue(7, 3);
        queue.UseHierarchy(f.Hierarchy);
        queue.Invoking(q => q.UseHierarchy(wide.Hierarchy)).Should().Throw<ArgumentException>().WithMessage("*the hierarchy's prototypes*");
        queue.Hierarchy.Should().BeSameAs(f.Hierarchy);
    }
}
