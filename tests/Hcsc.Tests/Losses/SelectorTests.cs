using Hcsc.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Tests.Losses;

/// <summary>The acceptance probabilities against the naive double-precision formulas, the clamps, and the sampling.</summary>
public class SelectorTests
{
    [Theory]
    [InlineData(ScalarType.Float64)] // the formula
    [InlineData(ScalarType.Float32)] // the training dtype, at float32's error bound
    public void Instance_acceptance_matches_the_naive_formula_directly_and_from_cached_normalisers(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(dtype);

        // Logits z·c / max(φ, 1e-3) of unit vectors: at most 1 / 1e-3 in size; a softmax over each level's prototypes.
        double tolerance = FloatBounds.Softmax(f.Queue.shape[1], f.Hierarchy.Levels[0].ClusterCount, 1 / 1e-3, LossFixture.UnitRoundoff(dtype));
        for (int l = 0; l < 3; l++)
        {
            var level = f.Hierarchy.Levels[l];
            var labels = level.Assignments.index_select(0, f.BatchIndices);
            var expected = NaiveHcsc.InstanceAcceptance(LossFixture.Rows(f.Queue), LossFixture.Values(labels).Select(v => (long)v).ToArray(), f.Prototypes[l], f.Concentrations[l]);
            var direct = InstanceSelector.AcceptanceProbabilities(f.Queue, labels, level);
            var cached = InstanceSelector.AcceptanceProbabilities(f.Queue, labels, level, InstanceSelector.LogNormalisers(f.Queue, level));
            direct.shape.Should().Equal(4, 7);
            LossFixture.Values(direct).Should().Equal(expected.SelectMany(r => r), (a, b) => Math.Abs(a - b) <= tolerance);
            LossFixture.Values(cached).Should().Equal(expected.SelectMany(r => r), (a, b) => Math.Abs(a - b) <= tolerance);
            LossFixture.Values(direct).Should().OnlyContain(a => a >= 0 && a <= 1);
        }
    }

    [Fact]
    public void The_concentration_floor_is_applied_to_the_instance_temperatures()
    {
        // Prototype 2 of level 0 has φ = 5e-4 < 1e-3; with the floor its logits are z·c / 1e-3, not / 5e-4.
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float64);
        var level = f.Hierarchy.Levels[0];
        var logZ = LossFixture.Values(InstanceSelector.LogNormalisers(f.Queue, level));
        var queue = LossFixture.Rows(f.Queue);
        for (int j = 0; j < queue.Length; j++)
        {
            double floored = NaiveHcsc.LogSumExp(f.Prototypes[0].Select((c, i) => NaiveHcsc.Dot(queue[j], c) / Math.Max(f.Concentrations[0][i], 1e-3)));
            logZ[j].Should().BeApproximately(floored, 1e-9);
        }
    }

    [Theory]
    [InlineData(ScalarType.Float64)]
    [InlineData(ScalarType.Float32)]
    public void Prototype_acceptance_matches_the_naive_formula_directly_and_from_cached_normalisers(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(dtype);
        const double tau = 0.2;

        // Logits S[c, p] / φ'(p) with |S| ≤ 1 and φ' = τ·φ/mean(φ) of the parent level: at most 1 / (the smallest φ').
        double smallestRescaled = f.Concentrations.Skip(1).Min(phi => tau * phi.Min() / phi.Average());
        double tolerance = FloatBounds.Softmax(f.Queue.shape[1], f.Hierarchy.Levels[0].ClusterCount, 1 / smallestRescaled, LossFixture.UnitRoundoff(dtype));
        for (int l = 0; l < 2; l++)
        {
            var level = f.Hierarchy.Levels[l];
            var parent = f.Hierarchy.Levels[l + 1];
            var labels = level.Assignments.index_select(0, f.BatchIndices);
            var expected = NaiveHcsc.PrototypeAcceptance(LossFixture.Values(labels).Select(v => (long)v).ToArray(), f.Prototypes[l], f.Prototypes[l + 1], f.Parents[l], f.Concentrations[l + 1], tau);
            var direct = PrototypeSelector.AcceptanceProbabilities(labels, level, parent, tau);
            var cached = PrototypeSelector.AcceptanceProbabilities(labels, level, parent, tau, PrototypeSelector.ParentLogNormalisers(level, parent, tau));
            direct.shape.Should().Equal(4, level.ClusterCount);
            LossFixture.Values(direct).Should().Equal(expected.SelectMany(r => r), (a, b) => Math.Abs(a - b) <= tolerance);
            LossFixture.Values(cached).Should().Equal(expected.SelectMany(r => r), (a, b) => Math.Abs(a - b) <= tolerance);
            LossFixture.Values(direct).Should().OnlyContain(a => a >= 0 && a <= 1);
        }
    }

    [Fact]
    public void Candidates_exclude_the_batch_positives_and_with_R3_the_largest_assigned_id()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float32);
        var level = f.Hierarchy.Levels[0]; // 5 prototypes, max assigned id 4
        var labels = tensor(new long[] { 1, 1, 3 });
        PrototypeSelector.Candidates(labels, level, false).data<bool>().ToArray().Should().Equal(true, false, true, false, true);
        PrototypeSelector.Candidates(labels, level, true).data<bool>().ToArray().Should().Equal(true, false, true, false, false);
    }

    [Theory]
    [InlineData(0.3, 0.3)]
    [InlineData(0.0, 0.0)]
    [InlineData(1.0, 0.999)] // clamped
    [InlineData(0.9995, 0.999)]
    public void Instance_masks_keep_each_negative_at_the_clamped_acceptance_rate(double acceptance, double rate)
    {
        using var scope = NewDisposeScope();
        const long n = 1000 * 1000;
        var mask = InstanceSelector.SampleMask(full(1000, 1000, acceptance, dtype: ScalarType.Float32), new Generator(11));
        double observed = mask.mean().item<float>();
        double sigma = Math.Sqrt(Math.Max(rate * (1 - rate), 1e-12) / n);
        observed.Should().BeApproximately(rate, (5 * sigma) + 1e-9);
        LossFixture.Values(mask.unique().output).Should().BeSubsetOf([0.0, 1.0]);
    }

    [Theory]
    [InlineData(0.25, 0.25)]
    [InlineData(0.0, 1e-4)] // clamped from below
    [InlineData(1.0, 0.999)]
    public void Prototype_masks_keep_candidates_at_the_clamped_rate_and_never_a_non_candidate(double acceptance, double rate)
    {
        using var scope = NewDisposeScope();
        var candidates = tensor(Enumerable.Range(0, 2000).Select(i => i % 4 != 0).ToArray());
        var mask = PrototypeSelector.SampleMask(full(1000, 2000, acceptance, dtype: ScalarType.Float32), candidates, new Generator(5));
        var candidateColumns = mask.index_select(1, candidates.nonzero().squeeze(1));
        double n = candidateColumns.numel();
        double observed = candidateColumns.mean().item<float>();
        observed.Should().BeApproximately(rate, (5 * Math.Sqrt(rate * (1 - rate) / n)) + 1e-9);
        mask.index_select(1, candidates.logical_not().nonzero().squeeze(1)).sum().item<float>().Should().Be(0);
    }

    [Fact]
    public void Masks_are_deterministic_for_a_fixed_generator_seed()
    {
        using var scope = NewDisposeScope();
        var acceptance = rand(50, 60, generator: new Generator(3));
        var a = InstanceSelector.SampleMask(acceptance, new Generator(42));
        var b = InstanceSelector.SampleMask(acceptance, new Generator(42));
        var c = InstanceSelector.SampleMask(acceptance, new Generator(43));
        a.eq(b).all().item<bool>().Should().BeTrue();
        a.eq(c).all().item<bool>().Should().BeFalse();
    }
}
