using Hcsc.Clustering;
using Hcsc.Core.Options;
using Microsoft.Extensions.Logging;
using static Hcsc.Tests.Clustering.ClusteringTestData;
using static TorchSharp.torch;

namespace Hcsc.Tests.Clustering;

public class KMeansTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Final_assignment_is_the_brute_force_nearest_centroid(bool useBounds)
    {
        var (points, _) = Blobs(480, 6, 8, 4.0, 1.0, seed: 5);
        using var x = ToTensor(points);
        using var result = new KMeans(new KMeansOptions { Iterations = 8, Restarts = 2, Seed = 3, UseBounds = useBounds, ChunkBytes = 4 * 6 * 50 }).Fit(x, 6);

        var expected = BruteForce(ToDoubles(x), ToDoubles(result.Centroids));
        var index = ToLongs(result.Assignments);
        var distance = ToDoubleArray(result.SquaredDistances);
        for (int i = 0; i < index.Length; i++)
        {
            if (expected.Gap[i] > 1e-3)
            {
                index[i].Should().Be(expected.Index[i]);
            }

            distance[i].Should().BeApproximately(expected.Distance[i], 1e-4 * (1 + expected.Distance[i]));
        }

        result.Objective.Should().BeApproximately(expected.Distance.Sum(), 1e-4 * expected.Distance.Sum());
        result.RestartObjectives.Should().HaveCount(2);
        result.RestartObjectives[result.BestRestart].Should().Be(result.RestartObjectives.Min());
    }

    [Fact]
    public void Centroids_are_the_means_of_their_members_after_the_last_update()
    {
        var (points, _) = Blobs(300, 4, 5, 5.0, 1.0, seed: 8);
        using var x = ToTensor(points);
        using var result = new KMeans(new KMeansOptions { Iterations = 30, Seed = 1, Initialization = KMeansInitialization.KMeansPlusPlus, Restarts = 1 }).Fit(x, 5);

        // Converged well-separated blobs: the final assignment equals the last training assignment,
        // so each centroid is the double-precision mean of its members.
        var p = ToDoubles(x);
        var c = ToDoubles(result.Centroids);
        var a = ToLongs(result.Assignments);
        for (int cluster = 0; cluster < 5; cluster++)
        {
            var members = Enumerable.Range(0, 300).Where(i => a[i] == cluster).ToArray();
            members.Should().NotBeEmpty();
            for (int j = 0; j < 4; j++)
            {
                c[cluster, j].Should().BeApproximately(members.Average(i => p[i, j]), 1e-4);
            }
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Objective_never_increases_between_iterations(bool useBounds)
    {
        var (points, _) = Blobs(800, 8, 20, 2.0, 1.0, seed: 11);
        using var x = ToTensor(points);
        using var result = new KMeans(new KMeansOptions { Iterations = 15, Seed = 2, UseBounds = useBounds, Restarts = 1 }).Fit(x, 12);

        result.EmptyClustersSplit.Should().Be(0, "the premise of monotonicity is plain Lloyd steps");
        result.Objectives.Should().HaveCount(15);
        for (int t = 1; t < result.Objectives.Count; t++)
        {
            result.Objectives[t].Should().BeLessThanOrEqualTo(result.Objectives[t - 1] * (1 + 1e-6), $"iteration {t}");
        }
    }

    [Fact]
    public void Bounds_give_the_same_clustering_as_plain_Lloyd()
    {
        var (points, _) = Blobs(1000, 8, 10, 2.0, 1.0, seed: 12);
        using var x = ToTensor(points);
        using var plain = new KMeans(new KMeansOptions { Iterations = 12, Seed = 4, UseBounds = false, Restarts = 1 }).Fit(x, 10);
        using var bounded = new KMeans(new KMeansOptions { Iterations = 12, Seed = 4, UseBounds = true, Restarts = 1 }).Fit(x, 10);

        ToLongs(bounded.Assignments).Should().Equal(ToLongs(plain.Assignments));
        bounded.Objectives.Zip(plain.Objectives).Should().OnlyContain(p => Math.Abs(p.First - p.Second) <= 1e-5 * p.Second);
        bounded.SearchedFraction.Should().BeLessThan(1.0, "some distance searches are skipped");
    }

    [Fact]
    public void Group_bounds_give_the_same_clustering_as_plain_Lloyd()
    {
        // k = 101 puts the centres in a group of 51 and a smaller last group of 50.
        var (points, _) = Blobs(1500, 6, 60, 2.0, 1.0, seed: 14);
        using var x = ToTensor(points);
        using var plain = new KMeans(new KMeansOptions { Iterations = 10, Seed = 6, UseBounds = false, Restarts = 1 }).Fit(x, 101);
        using var bounded = new KMeans(new KMeansOptions { Iterations = 10, Seed = 6, UseBounds = true, Restarts = 1 }).Fit(x, 101);

        ToLongs(bounded.Assignments).Should().Equal(ToLongs(plain.Assignments));
        bounded.Objectives.Zip(plain.Objectives).Should().OnlyContain(p => Math.Abs(p.First - p.Second) <= 1e-5 * p.Second);
        bounded.SearchedFraction.Should().BeLessThan(1.0);
    }

    [Fact]
    public void Empty_clusters_are_split_and_none_survive()
    {
        var (points, _) = Blobs(400, 3, 4, 3.0, 1.0, seed: 9);
        using var x = ToTensor(points);

        // A bad start: 3 of 6 centres far from every point, so they get no member at the first step.
        var start = new float[6, 3];
        for (int c = 0; c < 3; c++)
        {
            for (int j = 0; j < 3; j++)
            {
                start[c, j] = points[c * 50, j];
            }

            start[c + 3, c] = 1000f;
        }

        using var initial = tensor(start);
        using var result = new KMeans(new KMeansOptions { Iterations = 10, Seed = 0, Restarts = 1 }).Fit(x, 6, initial);

        result.EmptyClustersSplit.Should().BeGreaterThanOrEqualTo(3);
        using var sizes = bincount(result.Assignments, minlength: 6);
        ToLongs(sizes).Should().OnlyContain(s => s > 0);
        result.Objectives[^1].Should().BeLessThan(result.Objectives[0]);
    }

    [Fact]
    public void A_fixed_seed_is_deterministic_on_cpu()
    {
        var (points, _) = Blobs(600, 5, 9, 2.0, 1.0, seed: 21);
        using var x = ToTensor(points);
        var options = new KMeansOptions { Iterations = 6, Restarts = 2, Seed = 17, MaxPointsPerCentroid = 50 };
        using var first = new KMeans(options).Fit(x, 8);
        using var second = new KMeans(options).Fit(x, 8);
        using var other = new KMeans(new KMeansOptions { Iterations = 6, Restarts = 2, Seed = 18, MaxPointsPerCentroid = 50 }).Fit(x, 8);

        first.Centroids.allclose(second.Centroids, 0, 0).Should().BeTrue();
        ToLongs(first.Assignments).Should().Equal(ToLongs(second.Assignments));
        first.Objectives.Should().Equal(second.Objectives);
        first.Centroids.allclose(other.Centroids, 0, 0).Should().BeFalse("another seed draws another start");
    }

    [Fact]
    public void Training_uses_a_subsample_and_assigns_every_point()
    {
        var (points, _) = Blobs(500, 4, 5, 4.0, 1.0, seed: 31);
        using var x = ToTensor(points);
        using var result = new KMeans(new KMeansOptions { Iterations = 5, MaxPointsPerCentroid = 20, Seed = 1, Restarts = 1 }).Fit(x, 5);

        result.TrainingPoints.Should().Be(100);
        result.Assignments.shape.Should().Equal(500);
        var expected = BruteForce(ToDoubles(x), ToDoubles(result.Centroids));
        var index = ToLongs(result.Assignments);
        Enumerable.Range(0, 500).Where(i => expected.Gap[i] > 1e-3).Should().OnlyContain(i => index[i] == expected.Index[i]);
    }

    [Fact]
    public void KMeansPlusPlus_recovers_well_separated_blobs()
    {
        var (points, labels) = Blobs(300, 4, 6, 20.0, 0.5, seed: 41);
        using var x = ToTensor(points);
        using var result = new KMeans(new KMeansOptions { Iterations = 10, Seed = 5, Initialization = KMeansInitialization.KMeansPlusPlus, Restarts = 1 }).Fit(x, 6);
        ClusteringMetrics.AdjustedRandIndex(ToLongs(result.Assignments), labels).Should().BeApproximately(1.0, 1e-12);
    }

    [Fact]
    public void Progress_reports_every_iteration_of_every_restart()
    {
        var (points, _) = Blobs(100, 2, 3, 3.0, 1.0, seed: 2);
        using var x = ToTensor(points);
        var reports = new List<ClusteringProgress>();
        using var result = new KMeans(new KMeansOptions { Iterations = 4, Restarts = 3 }).Fit(x, 3, progress: new Collect(reports));
        reports.Should().HaveCount(12);
        reports[^1].Fraction.Should().BeApproximately(1.0, 1e-12);
        reports.Where(r => r.Restart == result.BestRestart).Select(r => r.Objective).Should().Equal(result.Objectives);
    }

    [Fact]
    public void Too_few_points_per_centroid_logs_a_warning()
    {
        var (points, _) = Blobs(30, 2, 3, 3.0, 1.0, seed: 2);
        using var x = ToTensor(points);
        var logger = new ListLogger();
        using var result = new KMeans(new KMeansOptions { Iterations = 2, MinPointsPerCentroid = 10, Restarts = 1 }, logger).Fit(x, 5);
        logger.Entries.Should().Contain(e => e.Level == LogLevel.Warning && e.Message.Contains("fewer than 10 per centroid"));
    }

    [Fact]
    public void Bad_input_is_rejected_before_any_work()
    {
        var kmeans = new KMeans(new KMeansOptions());
        using var few = zeros(3, 2);
        using var noFeatures = zeros(10, 0);
        using var flat = zeros(10);
        using var cube = zeros(2, 3, 4);
        using var integers = zeros(10, 2, ScalarType.Int64);
        using var withNan = ones(10, 3);
        withNan[4, 1] = tensor(float.NaN);
        withNan[7, 0] = tensor(float.PositiveInfinity);

        FluentActions.Invoking(() => kmeans.Fit(few, 5)).Should().Throw<ArgumentException>().WithMessage("*at least 5 points*N = 3*");
        FluentActions.Invoking(() => kmeans.Fit(noFeatures, 2)).Should().Throw<ArgumentException>().WithMessage("*d = 0*");
        FluentActions.Invoking(() => kmeans.Fit(flat, 2)).Should().Throw<ArgumentException>().WithMessage("*2-D*");
        FluentActions.Invoking(() => kmeans.Fit(cube, 2)).Should().Throw<ArgumentException>().WithMessage("*2-D*");
        FluentActions.Invoking(() => kmeans.Fit(integers, 2)).Should().Throw<ArgumentException>().WithMessage("*floating point*");
        FluentActions.Invoking(() => kmeans.Fit(withNan, 2)).Should().Throw<ArgumentException>().WithMessage("*2 of 10 rows*first is row 4*");
        FluentActions.Invoking(() => new KMeans(new KMeansOptions { Iterations = 0 })).Should().Throw<ArgumentException>().WithMessage("*Iterations*");
    }

    [Fact]
    public void Initial_centroids_of_the_wrong_shape_or_device_are_rejected()
    {
        var kmeans = new KMeans(new KMeansOptions { Restarts = 1 });
        using var x = randn(20, 3);
        using var wrongShape = zeros(4, 2);
        using var onMeta = empty(2, 3, device: new Device(TorchSharp.DeviceType.META));
        FluentActions.Invoking(() => kmeans.Fit(x, 2, wrongShape)).Should().Throw<ArgumentException>().WithMessage("*[k, d] = [2, 3]*");
        FluentActions.Invoking(() => kmeans.Fit(x, 2, onMeta)).Should().Throw<ArgumentException>().WithMessage("*meta*cpu*one device*");
    }

    private sealed class Collect(List<ClusteringProgress> into) : IProgress<ClusteringProgress>
    {
        public void Report(ClusteringProgress value) => into.Add(value);
    }
}
