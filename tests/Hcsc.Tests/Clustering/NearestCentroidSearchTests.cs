using Hcsc.Clustering;
using static Hcsc.Tests.Clustering.ClusteringTestData;
using static TorchSharp.torch;

namespace Hcsc.Tests.Clustering;

public class NearestCentroidSearchTests
{
    [Theory]
    [InlineData(1L << 20)] // one chunk
    [InlineData(4 * 7 * 13)] // 13 rows per chunk, last chunk partial
    [InlineData(1)] // one row per chunk
    public void Assign_matches_brute_force_in_double_precision(long chunkBytes)
    {
        var (points, _) = Blobs(200, 5, 4, 3.0, 1.0, seed: 1);
        var (centres, _) = Blobs(7, 5, 7, 3.0, 0.5, seed: 2);
        using var x = ToTensor(points);
        using var c = ToTensor(centres);

        var (assignments, distances) = NearestCentroidSearch.Assign(x, c, chunkBytes);
        using (assignments)
        using (distances)
        {
            var expected = BruteForce(ToDoubles(x), ToDoubles(c));
            var actualIndex = ToLongs(assignments);
            var actualDistance = ToDoubleArray(distances);
            for (int i = 0; i < points.GetLength(0); i++)
            {
                if (expected.Gap[i] > 1e-3)
                {
                    actualIndex[i].Should().Be(expected.Index[i], $"point {i} has a clear nearest centre");
                }

                actualDistance[i].Should().BeApproximately(expected.Distance[i], 1e-4 * (1 + expected.Distance[i]));
            }
        }
    }

    [Fact]
    public void Assign_rejects_mismatched_shapes_and_dtypes()
    {
        using var x = zeros(4, 3);
        using var wrongWidth = zeros(2, 5);
        using var wrongType = zeros(2, 3, ScalarType.Float64);
        FluentActions.Invoking(() => NearestCentroidSearch.Assign(x, wrongWidth)).Should().Throw<ArgumentException>().WithMessage("*same d*");
        FluentActions.Invoking(() => NearestCentroidSearch.Assign(x, wrongType)).Should().Throw<ArgumentException>().WithMessage("*dtype*");
    }
}
