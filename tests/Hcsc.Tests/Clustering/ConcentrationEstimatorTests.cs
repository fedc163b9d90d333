using Hcsc.Clustering;
using static Hcsc.Tests.Clustering.ClusteringTestData;
using static TorchSharp.torch;

namespace Hcsc.Tests.Clustering;

public class ConcentrationEstimatorTests
{
    // Four clusters: 0 has D = {1, 4} (√D = 1, 2), 1 has D = {9, 9, 9}, 2 has one member (D = 100),
    // 3 has D = {0.25, 0.25}. Members are listed out of order on purpose.
    private static readonly float[] Distances = [9f, 1f, 100f, 0.25f, 9f, 4f, 0.25f, 9f];
    private static readonly long[] Members = [1, 0, 2, 3, 1, 0, 3, 1];

    [Fact]
    public void Hand_worked_example_with_a_single_member_cluster_and_the_percentile_clip()
    {
        // φ0 = mean(1, 2) / ln(2 + 10) = 1.5 / ln 12 = 0.603644
        // φ1 = mean(3, 3, 3) / ln(13)   = 3 / ln 13  = 1.169614
        // φ3 = mean(.5, .5) / ln 12     = 0.5 / ln 12 = 0.201215
        // φ2: one member -> the largest φ of the level = φ1
        // sorted (φ3, φ0, φ1, φ1): P10 at position 0.3 = φ3 + 0.3 (φ0 − φ3) = 0.321944; P90 at 2.7 = φ1
        // clipped: (φ0, φ1, φ1, 0.321944), mean 0.816204; φ ← 0.2 φ / mean
        double phi0 = 1.5 / Math.Log(12), phi1 = 3 / Math.Log(13), phi3 = 0.5 / Math.Log(12);
        double low = phi3 + (0.3 * (phi0 - phi3));
        double[] clipped = [phi0, phi1, phi1, low];
        double mean = clipped.Average();
        var expected = clipped.Select(v => 0.2 * v / mean).ToArray();
        expected.Should().BeEquivalentTo(new[] { 0.1479151, 0.2865984, 0.2865984, 0.0788881 }, o => o.WithStrictOrdering().Using<double>(c => c.Subject.Should().BeApproximately(c.Expectation, 1e-6)).WhenTypeIs<double>());

        using var d = tensor(Distances);
        using var a = tensor(Members);
        using var phi = ConcentrationEstimator.Estimate(d, a, 4, 0.2);
        var actual = ToDoubleArray(phi);
        for (int c = 0; c < 4; c++)
        {
            actual[c].Should().BeApproximately(expected[c], 1e-6, $"cluster {c}");
        }

        phi.dtype.Should().Be(ScalarType.Float32);
    }

    [Fact]
    public void Other_percentiles_clip_both_ends()
    {
        // sorted (φ3, φ0, φ1, φ1); P25 at position 0.75 = φ3 + 0.75 (φ0 − φ3); P60 at 1.8 = φ0 + 0.8 (φ1 − φ0).
        double phi0 = 1.5 / Math.Log(12), phi1 = 3 / Math.Log(13), phi3 = 0.5 / Math.Log(12);
        double low = phi3 + (0.75 * (phi0 - phi3)), high = phi0 + (0.8 * (phi1 - phi0));
        double[] clipped = [phi0, high, high, low];
        double mean = clipped.Average();

        using var d = tensor(Distances);
        using var a = tensor(Members);
        using var phi = ConcentrationEstimator.Estimate(d, a, 4, 0.2, 25, 60);
        var actual = ToDoubleArray(phi);
        for (int c = 0; c < 4; c++)
        {
            actual[c].Should().BeApproximately(0.2 * clipped[c] / mean, 1e-6, $"cluster {c}");
        }
    }

    [Fact]
    public void Without_any_cluster_of_two_members_every_concentration_is_tau()
    {
        using var d = tensor(new[] { 1f, 2f, 3f });
        using var a = tensor(new long[] { 0, 1, 2 });
        using var phi = ConcentrationEstimator.Estimate(d, a, 4, 0.3);
        ToDoubleArray(phi).Should().OnlyContain(v => Math.Abs(v - 0.3) < 1e-6);
    }

    [Fact]
    public void Mismatched_inputs_are_rejected()
    {
        using var d = tensor(new[] { 1f, 2f });
        using var a = tensor(new long[] { 0 });
        FluentActions.Invoking(() => ConcentrationEstimator.Estimate(d, a, 2, 0.2)).Should().Throw<ArgumentException>().WithMessage("*same n*");
        using var a2 = tensor(new long[] { 0, 1 });
        FluentActions.Invoking(() => ConcentrationEstimator.Estimate(d, a2, 2, 0)).Should().Throw<ArgumentOutOfRangeException>();
    }
}
