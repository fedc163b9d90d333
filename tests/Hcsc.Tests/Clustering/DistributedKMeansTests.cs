using Hcsc.Clustering;
using Hcsc.Core.Distributed;
using Hcsc.Core.Options;
using static Hcsc.Tests.Clustering.ClusteringTestData;
using static TorchSharp.torch;

namespace Hcsc.Tests.Clustering;

/// <summary>
/// Distributed k-means without MPI: the shard bookkeeping with hand-worked values, and the distributed entry points with a
/// group of one, which must compute exactly what the single-process ones do. The two-rank equality with one process is
/// checked under <c>mpirun</c> (tests/Hcsc.MpiTests, KMeansChecks.cs).
/// </summary>
public class DistributedKMeansTests
{
    private static readonly ICollectives One = SingleProcessCollectives.Instance;

    [Fact]
    public void Offsets_are_the_exclusive_prefix_sums_of_the_counts()
    {
        PointShard.OffsetsOf([1900, 2100]).Should().Equal(0, 1900);
        PointShard.OffsetsOf([0, 3, 0, 5]).Should().Equal(0, 0, 3, 3);
        PointShard.OffsetsOf([7]).Should().Equal(0);
    }

    [Fact]
    public void A_rank_owns_its_block_of_global_rows()
    {
        // Rank 1 of two, blocks [0, 1900) and [1900, 4000).
        var shard = new PointShard(new RankOnly(rank: 1, size: 2), [1900, 2100]);
        shard.Offset.Should().Be(1900);
        shard.LocalRows.Should().Be(2100);
        shard.GlobalRows.Should().Be(4000);
        shard.IsDistributed.Should().BeTrue();

        // Global rows in a drawn order: 5 and 1899 are rank 0's, 1900 and 3999 rank 1's (its local rows 0 and 2099).
        var (positions, rows) = shard.OwnedOf([5, 3999, 1899, 1900, 2500]);
        positions.Should().Equal(1, 3, 4);
        rows.Should().Equal(2099, 0, 600);

        using var indices = tensor(new long[] { 3999, 0, 1901 });
        var (p, r) = shard.Owned(indices);
        using (p)
        using (r)
        {
            ToLongs(p).Should().Equal(0, 2);
            ToLongs(r).Should().Equal(2099, 1);
        }
    }

    [Fact]
    public void A_group_of_one_holds_every_row_and_communicates_nothing()
    {
        using var x = randn(12, 3);
        var shard = PointShard.Create(One, x, k: 4, "points");
        shard.Counts.Should().Equal(12);
        shard.Offset.Should().Be(0);
        shard.IsDistributed.Should().BeFalse();
        shard.Sum(2.5).Should().Be(2.5);
        shard.Max(-1).Should().Be(-1);
        using var rows = tensor(new long[] { 11, 2 });
        using var fetched = shard.FetchRows(x, rows);
        using var expected = x.index_select(0, rows);
        Same(fetched, expected).Should().BeTrue();
    }

    [Fact]
    public void Invalid_shards_are_refused_with_the_problem()
    {
        using var empty = zeros(0, 3);
        FluentActions.Invoking(() => new KMeans(new KMeansOptions()).FitDistributed(empty, 1, One))
            .Should().Throw<ArgumentException>().WithMessage("*Rank 0: The points of this rank are empty*");
        using var few = randn(3, 2);
        FluentActions.Invoking(() => new KMeans(new KMeansOptions()).FitDistributed(few, 4, One))
            .Should().Throw<ArgumentException>().WithMessage("*needs at least 4 points; the 1 ranks hold N = 3*");
        using var bad = randn(5, 2);
        bad[2, 1] = tensor(float.NaN);
        FluentActions.Invoking(() => new HierarchicalKMeans(new ClusteringOptions { NumClusters = [3, 2] }, 0.2).FitDistributed(bad, One))
            .Should().Throw<ArgumentException>().WithMessage("*Rank 0: 1 of 5 rows*NaN*");
    }

    [Theory]
    [InlineData(KMeansInitialization.RandomPoints, 20)] // subsample of 20 · 6 = 120 of 480 points
    [InlineData(KMeansInitialization.KMeansPlusPlus, 20)]
    [InlineData(KMeansInitialization.RandomPoints, 1000)] // no subsample
    public void KMeans_with_a_group_of_one_is_Fit_bit_for_bit(KMeansInitialization initialization, int maxPointsPerCentroid)
    {
        var (points, _) = Blobs(480, 6, 8, 4.0, 1.0, seed: 5);
        using var x = ToTensor(points);
        var kmeans = new KMeans(new KMeansOptions
        {
            Iterations = 6, Restarts = 2, Seed = 3, Initialization = initialization, MaxPointsPerCentroid = maxPointsPerCentroid, MinPointsPerCentroid = 1,
        });
        using var plain = kmeans.Fit(x, 6);
        using var distributed = kmeans.FitDistributed(x, 6, One);
        Same(distributed.Centroids, plain.Centroids).Should().BeTrue();
        Same(distributed.Assignments, plain.Assignments).Should().BeTrue();
        Same(distributed.SquaredDistances, plain.SquaredDistances).Should().BeTrue();
        distributed.Objectives.Should().Equal(plain.Objectives);
        distributed.Objective.Should().Be(plain.Objective);
        distributed.TrainingPoints.Should().Be(plain.TrainingPoints);
    }

    [Fact]
    public void HierarchicalKMeans_with_a_group_of_one_is_Fit_bit_for_bit()
    {
        var (points, _) = Blobs(400, 4, 8, 2.0, 1.0, seed: 6);
        using var x = ToTensor(points);
        var clusterer = new HierarchicalKMeans(new ClusteringOptions { NumClusters = [16, 6, 2], Iterations = 5, Restarts = 2, MaxPointsPerCentroid = 10, MinPointsPerCentroid = 1 }, 0.2);
        using var plain = clusterer.Fit(x);
        using var distributed = clusterer.FitDistributed(x, One);
        for (int l = 0; l < 3; l++)
        {
            var a = distributed.Hierarchy.Levels[l];
            var e = plain.Hierarchy.Levels[l];
            Same(a.Prototypes, e.Prototypes).Should().BeTrue();
            Same(a.Concentrations, e.Concentrations).Should().BeTrue();
            Same(a.Assignments, e.Assignments).Should().BeTrue();
            (a.Parents is null ? e.Parents is null : Same(a.Parents, e.Parents!)).Should().BeTrue();
            Same(distributed.RawCentroids[l], plain.RawCentroids[l]).Should().BeTrue();
            distributed.Levels[l].Objective.Should().Be(plain.Levels[l].Objective);
            distributed.Levels[l].Points.Should().Be(plain.Levels[l].Points);
        }
    }

    [Fact]
    public void Concentrations_over_a_shard_of_one_are_the_plain_estimate()
    {
        using var distances = rand(50, dtype: ScalarType.Float32);
        using var members = randint(5, [50]);
        using var plain = ConcentrationEstimator.Estimate(distances, members, 5, 0.2);
        using var sharded = ConcentrationEstimator.Estimate(distances, members, 5, 0.2, 10, 90, PointShard.Whole(50));
        Same(sharded, plain).Should().BeTrue();
    }

    /// <summary>The same shape and, element by element, the same values (bit for bit for finite floats).</summary>
    private static bool Same(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape) || a.dtype != b.dtype)
        {
            return false;
        }

        using var equal = a.eq(b);
        using var all = equal.all();
        return all.item<bool>();
    }

    /// <summary>A rank of a group that is never asked to communicate (the bookkeeping only).</summary>
    private sealed class RankOnly(int rank, int size) : ICollectives
    {
        public int Rank => rank;

        public int Size => size;

        public void AllReduceSum(Span<float> values) => throw new NotSupportedException();

        public void AllReduceSum(Span<double> values) => throw new NotSupportedException();

        public void AllReduceSum(Span<long> values) => throw new NotSupportedException();

        public void AllGather<T>(ReadOnlySpan<T> local, Span<T> gathered)
            where T : unmanaged => throw new NotSupportedException();

        public T[] AllGatherVariable<T>(ReadOnlySpan<T> local, out int[] counts)
            where T : unmanaged => throw new NotSupportedException();

        public void Broadcast<T>(Span<T> buffer, int root)
            where T : unmanaged => throw new NotSupportedException();

        public void Barrier() => throw new NotSupportedException();
    }
}
