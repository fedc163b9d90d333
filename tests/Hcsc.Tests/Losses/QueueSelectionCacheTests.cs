using Hcsc.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Tests.Losses;

public class QueueSelectionCacheTests
{
    [Theory]
    [InlineData(ScalarType.Float32, 7, 3, 5)]     // slots 5, 6, 0
    [InlineData(ScalarType.Float32, 29, 11, 20)]  // slots 20 … 28 (a full SIMD group and a tail), then 0, 1
    [InlineData(ScalarType.Float64, 29, 11, 20)]
    public void Update_after_a_wrapping_enqueue_equals_a_full_refresh(ScalarType dtype, long queueLength, int enqueued, int pointer)
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(dtype, queueLength: queueLength);
        using var cache = new QueueSelectionCache();
        cache.Refresh(f.Hierarchy, f.Queue);
        cache.QueueLength.Should().Be(queueLength);

        var keys = nn.functional.normalize(randn(new long[] { enqueued, 3 }, dtype: dtype, generator: new Generator(2)), dim: 1);
        var queue = f.Queue.clone();
        for (int i = 0; i < enqueued; i++)
        {
            queue[(pointer + i) % queueLength] = keys[i];
        }

        cache.Update(pointer, keys);

        // Log-sum-exps and softmax probabilities over 5 logits z·c/max(φ, 1e-3) of width 3, at most 1000 in size.
        double tolerance = FloatBounds.Softmax(3, 5, 1000, LossFixture.UnitRoundoff(dtype));
        var z = LossFixture.Rows(queue);
        for (int l = 0; l < 3; l++)
        {
            var expected = InstanceSelector.LogNormalisers(queue, f.Hierarchy.Levels[l]);
            cache.LogNormalisers[l].allclose(expected, rtol: 0, atol: tolerance).Should().BeTrue($"level {l}: max |difference| {cache.LogNormalisers[l].sub(expected).abs().max().to(ScalarType.Float64).item<double>()} for values up to {expected.abs().max().to(ScalarType.Float64).item<double>()}");

            // Thresholds t[c, j] = max(p_l(c | z_j), 1e-3), naive.
            var table = LossFixture.Rows(cache.Thresholds[l]);
            for (int j = 0; j < z.Length; j++)
            {
                var p = NaiveHcsc.Membership(z[j], f.Prototypes[l], f.Concentrations[l]);
                for (int c = 0; c < p.Length; c++)
                {
                    table[c][j].Should().BeApproximately(Math.Max(p[c], 1e-3), tolerance, $"level {l}, prototype {c}, slot {j}");
                }
            }
        }
    }

    [Fact]
    public void Chunks_of_a_refresh_and_runs_of_any_length_give_the_same_entries()
    {
        // 5 000 slots: Refresh works in chunks of 4 096 keys. Re-enqueueing the same keys in runs of 3 (padded), 11
        // (overlapping last group) and 64 must leave the table as Refresh wrote it (up to the last bit of the products).
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float32, queueLength: 5000);
        using var cache = new QueueSelectionCache();
        cache.Refresh(f.Hierarchy, f.Queue);
        var table = cache.Thresholds.Select(t => t.clone()).ToArray();
        var logZ = cache.LogNormalisers.Select(t => t.clone()).ToArray();
        foreach (var (start, count) in new[] { (4090L, 3L), (4093L, 11L), (4990L, 64L) })
        {
            var keys = cat([f.Queue, f.Queue], 0).narrow(0, start, count);      // the keys already in those slots
            cache.Update(start, keys);
        }

        // Products of other shapes sum in other orders: log-sum-exps and probabilities over 5 logits ≤ 1000 of width 3.
        double tolerance = FloatBounds.Softmax(3, 5, 1000, FloatBounds.Float32);
        var z = LossFixture.Rows(f.Queue);
        for (int l = 0; l < 3; l++)
        {
            cache.Thresholds[l].allclose(table[l], rtol: 0, atol: tolerance).Should().BeTrue($"level {l} thresholds");
            cache.LogNormalisers[l].allclose(logZ[l], rtol: 0, atol: tolerance).Should().BeTrue($"level {l} normalisers");
            var expected = InstanceSelector.LogNormalisers(f.Queue, f.Hierarchy.Levels[l]);
            cache.LogNormalisers[l].allclose(expected, rtol: 0, atol: tolerance).Should().BeTrue($"level {l}: worst {DescribeWorst(cache.LogNormalisers[l], expected)}");
            var rows = LossFixture.Rows(cache.Thresholds[l].narrow(1, 4090, 12));
            for (int j = 0; j < 12; j++)
            {
                var p = NaiveHcsc.Membership(z[4090 + j], f.Prototypes[l], f.Concentrations[l]);
                for (int c = 0; c < p.Length; c++)
                {
                    rows[c][j].Should().BeApproximately(Math.Max(p[c], 1e-3), tolerance, $"level {l}, prototype {c}, slot {4090 + j}");
                }
            }
        }
    }

    [Fact]
    public void Normaliser_mode_keeps_no_thresholds()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float32);
        using var cache = new QueueSelectionCache(QueueSelectionCacheMode.Normalisers);
        cache.Refresh(f.Hierarchy, f.Queue);
        cache.Thresholds.Should().BeEmpty();
        cache.LogNormalisers.Should().HaveCount(3);
        cache.Update(6, f.Queue.narrow(0, 0, 2));
        cache.LogNormalisers[0].shape.Should().Equal(7);
    }

    [Fact]
    public void The_cached_normalisers_equal_the_naive_logsumexp()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float64);
        using var cache = new QueueSelectionCache();
        cache.Refresh(f.Hierarchy, f.Queue);
        var z = LossFixture.Rows(f.Queue);
        for (int l = 0; l < 3; l++)
        {
            var expected = z.Select(row => NaiveHcsc.LogSumExp(f.Prototypes[l].Select((c, i) => NaiveHcsc.Dot(row, c) / Math.Max(f.Concentrations[l][i], 1e-3))));
            LossFixture.Values(cache.LogNormalisers[l]).Should().Equal(expected, (a, b) => Math.Abs(a - b) <= FloatBounds.Softmax(3, 5, 1000, FloatBounds.Float64));
        }
    }

    [Fact]
    public void Misuse_is_reported()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float32);
        using var other = new LossFixture(ScalarType.Float32, seed: 99);
        using var cache = new QueueSelectionCache();
        var keys = f.Queue.narrow(0, 0, 2);
        cache.Invoking(c => c.Update(0, keys)).Should().Throw<InvalidOperationException>();
        cache.Refresh(f.Hierarchy, f.Queue);
        cache.Invoking(c => c.Update(7, keys)).Should().Throw<ArgumentOutOfRangeException>();
        cache.Invoking(c => c.Update(0, randn(2, 4))).Should().Throw<ArgumentException>().WithMessage("*shape [2, 4]*");

        using var objective = new HcscObjective();
        objective.Invoking(o => o.Compute(f.Query, f.Key, f.Queue, f.BatchIndices, other.Hierarchy, new Generator(1), cache: cache))
            .Should().Throw<ArgumentException>().WithMessage("*another hierarchy*");
        var longer = cat([f.Queue, f.Queue], 0);
        objective.Invoking(o => o.Compute(f.Query, f.Key, longer, f.BatchIndices, f.Hierarchy, new Generator(1), cache: cache))
            .Should().Throw<ArgumentException>().WithMessage("*7 slots*shape [14, 3]*");
    }

    private static string DescribeWorst(Tensor got, Tensor expected)
    {
        long at = got.sub(expected).abs().argmax().item<long>();
        return $"slot {at}: {got[at].item<float>()} vs {expected[at].item<float>()}";
    }
}
