using Hcsc.Clustering;
using Hcsc.Core.Options;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace Hcsc.Tests.Clustering;

/// <summary>Collapsed embeddings: fewer distinct points than prototypes is reported, not crashed on.</summary>
public class DegenerateLevelTests
{
    [Fact]
    public void Fewer_distinct_points_than_prototypes_gives_a_hierarchy_and_reports_the_empty_prototypes()
    {
        // 300 points that are only 3 distinct unit vectors (a collapsed encoder), clustered into 8 -> 4 -> 2.
        using var scope = NewDisposeScope();
        var distinct = nn.functional.normalize(tensor(new float[] { 1, 0, 0, 0, 1, 0, 0, 0, 1 }).view(3, 3), dim: 1);
        var points = distinct.index_select(0, arange(300, ScalarType.Int64).remainder(3L));
        var logger = new ListLogger();

        using var result = new HierarchicalKMeans(new ClusteringOptions { NumClusters = [8, 4, 2], Iterations = 5, Restarts = 2 }, 0.2, logger).Fit(points);

        result.Hierarchy.ClusterCounts.Should().Equal(8L, 4L, 2L);
        var populated = result.Hierarchy.Levels[0].Assignments.bincount(null, 8).gt(0L).sum().item<long>();
        populated.Should().BeLessThanOrEqualTo(3, "3 distinct points can fill at most 3 clusters");
        result.Levels[0].EmptyClusters.Should().Be(8 - (int)populated);
        result.Levels[0].EmptyClusters.Should().BeGreaterThanOrEqualTo(5);
        foreach (var level in result.Hierarchy.Levels)
        {
            level.Concentrations.isfinite().all().item<bool>().Should().BeTrue();
            level.Prototypes.isfinite().all().item<bool>().Should().BeTrue();
        }

        logger.Entries.Should().Contain(e => e.Level == LogLevel.Warning
            && e.Message.Contains($"level 0: {result.Levels[0].EmptyClusters} of 8 prototypes have no members")
            && e.Message.Contains("collapsed"));
    }

    [Fact]
    public void A_healthy_level_reports_no_empty_prototypes_and_no_warning()
    {
        var (raw, _) = ClusteringTestData.Blobs(400, 6, 8, 2.0, 1.0, seed: 2);
        using var points = nn.functional.normalize(ClusteringTestData.ToTensor(raw), dim: 1);
        var logger = new ListLogger();
        using var result = new HierarchicalKMeans(new ClusteringOptions { NumClusters = [8, 4, 2], Iterations = 5, Restarts = 1 }, 0.2, logger).Fit(points);
        result.Levels.Select(l => l.EmptyClusters).Should().AllBeEquivalentTo(0);
        logger.Entries.Should().NotContain(e => e.Level >= LogLevel.Warning && e.Message.Contains("no members"));
    }
}
