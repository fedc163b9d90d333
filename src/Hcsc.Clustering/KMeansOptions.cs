namespace Hcsc.Clustering;

/// <summary>Settings of one <see cref="KMeans"/> run (squared-L2 Lloyd iterations with restarts).</summary>
public sealed class KMeansOptions
{
    /// <summary>Lloyd iterations per restart (assignment + centroid update). Default 20.</summary>
    public int Iterations { get; init; } = 20;

    /// <summary>Restarts; the one with the lowest final training objective wins. Default 1.</summary>
    public int Restarts { get; init; } = 1;

    /// <summary>Seed of the run; restart r uses a generator seeded from (seed, r). Default 0.</summary>
    public long Seed { get; init; }

    /// <summary>The training subsample has at most this many points per centroid (k · this); all points are assigned afterwards. Default 1000.</summary>
    public int MaxPointsPerCentroid { get; init; } = 1000;

    /// <summary>Fewer than k · this points draws a warning. Default 10.</summary>
    public int MinPointsPerCentroid { get; init; } = 10;

    /// <summary>Initialisation of each restart. Default <see cref="KMeansInitialization.RandomPoints"/>.</summary>
    public KMeansInitialization Initialization { get; init; } = KMeansInitialization.RandomPoints;

    /// <summary>
    /// Bytes of the temporary distance block <c>[rows, k]</c> float32 computed at once; the number of
    /// rows per chunk is this / (4 · k), at least 1. Bounds the working memory of every distance pass.
    /// Default 32 MiB.
    /// </summary>
    public long ChunkBytes { get; init; } = 32L << 20;

    /// <summary>
    /// Skip distance computations that provably cannot change a point's assignment (Hamerly bounds over groups of about 50 centres, as Yinyang k-means' global filter);
    /// the assignments are the same as plain Lloyd's up to float rounding on exact ties. Only used when
    /// there are at least 8 training points per centre (below that the k × k centre distances the
    /// bounds need cost as much as the search they save). Default true.
    /// </summary>
    public bool UseBounds { get; init; } = true;

    /// <summary>Throws <see cref="ArgumentException"/> describing every invalid setting.</summary>
    public void Validate()
    {
        var problems = new List<string>();
        if (Iterations < 1)
        {
            problems.Add($"Iterations must be >= 1, got {Iterations}.");
        }

        if (Restarts < 1)
        {
            problems.Add($"Restarts must be >= 1, got {Restarts}.");
        }

        if (MaxPointsPerCentroid < 1)
        {
            problems.Add($"MaxPointsPerCentroid must be >= 1, got {MaxPointsPerCentroid}.");
        }

        if (MinPointsPerCentroid < 0)
        {
            problems.Add($"MinPointsPerCentroid must be >= 0, got {MinPointsPerCentroid}.");
        }

        if (ChunkBytes < 1)
        {
            problems.Add($"ChunkBytes must be >= 1, got {ChunkBytes}.");
        }

        if (!Enum.IsDefined(Initialization))
        {
            problems.Add($"Initialization {(int)Initialization} is not a known value.");
        }

        if (problems.Count > 0)
        {
            throw new ArgumentException("Invalid k-means options: " + string.Join(" ", problems));
        }
    }
}
