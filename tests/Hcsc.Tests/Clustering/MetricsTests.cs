using Hcsc.Clustering;

namespace Hcsc.Tests.Clustering;

public class MetricsTests
{
    [Fact]
    public void Tensor_labels_give_the_same_scores_as_spans_and_other_tensors_are_refused()
    {
        long[] a = [0, 0, 1, 1, 2, 2, 2, 0], b = [1, 1, 0, 0, 0, 2, 2, 1];
        using var ta = TorchSharp.torch.tensor(a);
        using var tb = TorchSharp.torch.tensor(b.Select(v => (int)v).ToArray()); // int32 labels too
        ClusteringMetrics.NormalizedMutualInformation(ta, tb).Should().Be(ClusteringMetrics.NormalizedMutualInformation(a, b));
        ClusteringMetrics.AdjustedMutualInformation(ta, tb).Should().Be(ClusteringMetrics.AdjustedMutualInformation(a, b));
        ClusteringMetrics.AdjustedRandIndex(ta, tb).Should().Be(ClusteringMetrics.AdjustedRandIndex(a, b));
        using var floats = TorchSharp.torch.ones(8);
        FluentActions.Invoking(() => ClusteringMetrics.AdjustedRandIndex(ta, floats)).Should().Throw<ArgumentException>().WithMessage("b must be a 1-D integer tensor*");
    }

    [Fact]
    public void Identical_and_renamed_labelings_score_one()
    {
        long[] a = [0, 0, 1, 1, 2, 2, 2, 3];
        long[] renamed = [7, 7, 5, 5, -1, -1, -1, 40];
        foreach (var b in new[] { a, renamed })
        {
            ClusteringMetrics.NormalizedMutualInformation(a, b).Should().BeApproximately(1.0, 1e-12);
            ClusteringMetrics.AdjustedMutualInformation(a, b).Should().BeApproximately(1.0, 1e-12);
            ClusteringMetrics.AdjustedRandIndex(a, b).Should().BeApproximately(1.0, 1e-12);
        }
    }

    [Fact]
    public void Hand_worked_values()
    {
        long[] a = [0, 0, 1, 1];
        long[] b = [0, 0, 1, 2];

        // H(a) = ln 2, H(b) = 1.5 ln 2, I = ln 2 (b refines a) -> NMI = ln 2 / (1.25 ln 2) = 0.8.
        ClusteringMetrics.NormalizedMutualInformation(a, b).Should().BeApproximately(0.8, 1e-12);

        // Pairs: Σ C(n_ij, 2) = 1, Σ C(a_i, 2) = 2, Σ C(b_j, 2) = 1, C(4, 2) = 6: E = 2/6,
        // ARI = (1 − 1/3) / (1.5 − 1/3) = 4/7.
        ClusteringMetrics.AdjustedRandIndex(a, b).Should().BeApproximately(4.0 / 7.0, 1e-12);

        // A single cluster against singletons: ARI 0, NMI 0.
        long[] one = [0, 0, 0, 0];
        long[] singletons = [0, 1, 2, 3];
        ClusteringMetrics.AdjustedRandIndex(one, singletons).Should().BeApproximately(0.0, 1e-12);
        ClusteringMetrics.NormalizedMutualInformation(one, singletons).Should().BeApproximately(0.0, 1e-12);
        ClusteringMetrics.AdjustedMutualInformation(one, singletons).Should().BeApproximately(0.0, 1e-12);
    }

    [Fact]
    public void Independent_balanced_labelings_have_zero_mutual_information()
    {
        // a = i mod 2 and b = (i div 2) mod 2 over 8 items: every cell holds 2 items.
        long[] a = [0, 1, 0, 1, 0, 1, 0, 1];
        long[] b = [0, 0, 1, 1, 0, 0, 1, 1];
        ClusteringMetrics.NormalizedMutualInformation(a, b).Should().BeApproximately(0.0, 1e-12);

        // Σ C(n_ij, 2) = 4, Σ C(a_i, 2) = Σ C(b_j, 2) = 12, C(8, 2) = 28: ARI = (4 − 144/28) / (12 − 144/28) = −1/6.
        ClusteringMetrics.AdjustedRandIndex(a, b).Should().BeApproximately(-1.0 / 6.0, 1e-12);
    }

    [Fact]
    public void Adjusted_mutual_information_matches_the_expectation_over_all_permutations()
    {
        long[] a = [0, 0, 0, 1, 1, 2];
        long[] b = [0, 0, 1, 1, 1, 1];
        double mi = MutualInformation(a, b);
        double expected = 0;
        int count = 0;
        foreach (var permutation in Permutations(b))
        {
            expected += MutualInformation(a, permutation);
            count++;
        }

        expected /= count;
        double mean = (Entropy(a) + Entropy(b)) / 2;
        double reference = (mi - expected) / (mean - expected);

        ClusteringMetrics.AdjustedMutualInformation(a, b).Should().BeApproximately(reference, 1e-10);
    }

    [Fact]
    public void Large_random_labelings_score_near_zero()
    {
        var random = new Random(3);
        var a = Enumerable.Range(0, 4000).Select(_ => (long)random.Next(10)).ToArray();
        var b = Enumerable.Range(0, 4000).Select(_ => (long)random.Next(8)).ToArray();
        ClusteringMetrics.AdjustedMutualInformation(a, b).Should().BeApproximately(0.0, 0.01);
        ClusteringMetrics.AdjustedRandIndex(a, b).Should().BeApproximately(0.0, 0.01);
        ClusteringMetrics.NormalizedMutualInformation(a, b).Should().BeLessThan(0.02);
    }

    [Fact]
    public void Different_lengths_are_rejected()
    {
        FluentActions.Invoking(() => ClusteringMetrics.AdjustedRandIndex(new long[] { 0, 1 }, new long[] { 0 }))
            .Should().Throw<ArgumentException>().WithMessage("*same length*");
    }

    private static double MutualInformation(long[] a, long[] b)
    {
        double n = a.Length, mi = 0;
        foreach (var group in a.Zip(b).GroupBy(p => p))
        {
            double nij = group.Count();
            double ai = a.Count(x => x == group.Key.First);
            double bj = b.Count(x => x == group.Key.Second);
            mi += nij / n * Math.Log(n * nij / (ai * bj));
        }

        return mi;
    }

    private static double Entropy(long[] labels) =>
        -labels.GroupBy(x => x).Sum(g => (double)g.Count() / labels.Length * Math.Log((double)g.Count() / labels.Length));

    private static IEnumerable<long[]> Permutations(long[] items)
    {
        if (items.Length <= 1)
        {
            yield return items;
            yield break;
        }

        for (int i = 0; i < items.Length; i++)
        {
            var rest = items.Where((_, j) => j != i).ToArray();
            foreach (var tail in Permutations(rest))
            {
                yield return [items[i], .. tail];
            }
        }
    }
}
