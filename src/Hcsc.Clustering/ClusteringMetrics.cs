namespace Hcsc.Clustering;

/// <summary>
/// Agreement between two labelings of the same n items (e.g. a level's assignment and class labels),
/// with the same definitions and conventions as scikit-learn (arithmetic-mean normalisation). Label
/// values are arbitrary integers; only the partition matters, so all three are invariant to renaming.
/// </summary>
public static class ClusteringMetrics
{
    /// <summary>
    /// Normalised mutual information NMI = I(a; b) / ((H(a) + H(b)) / 2), in [0, 1]; 1 when both
    /// labelings have a single cluster.
    /// </summary>
    /// <exception cref="ArgumentException">Different lengths or empty input.</exception>
    public static double NormalizedMutualInformation(ReadOnlySpan<long> a, ReadOnlySpan<long> b)
    {
        var table = ContingencyTable.Build(a, b);
        if (IsTrivial(table))
        {
            return 1.0;
        }

        double mi = table.MutualInformation();
        double mean = (table.Entropy(table.RowSums) + table.Entropy(table.ColumnSums)) / 2;
        return mean <= 0 ? 0.0 : Math.Clamp(mi / mean, 0.0, 1.0);
    }

    /// <summary>
    /// Adjusted mutual information AMI = (I − E[I]) / ((H(a) + H(b)) / 2 − E[I]), E[I] the expected
    /// mutual information of two random labelings with the same cluster sizes; 1 for identical
    /// partitions, about 0 for independent ones (can be negative). Cost O(R·C·min(n_i)) for R and C clusters.
    /// </summary>
    /// <exception cref="ArgumentException">Different lengths or empty input.</exception>
    public static double AdjustedMutualInformation(ReadOnlySpan<long> a, ReadOnlySpan<long> b)
    {
        var table = ContingencyTable.Build(a, b);
        if (IsTrivial(table))
        {
            return 1.0;
        }

        double mi = table.MutualInformation();
        double expected = table.ExpectedMutualInformation();
        double mean = (table.Entropy(table.RowSums) + table.Entropy(table.ColumnSums)) / 2;
        double denominator = mean - expected;
        const double MachineEpsilon = 2.220446049250313e-16;
        denominator = denominator < 0 ? Math.Min(denominator, -MachineEpsilon) : Math.Max(denominator, MachineEpsilon);

        return (mi - expected) / denominator;
    }

    /// <summary>
    /// Adjusted Rand index ARI = (Σ_ij C(n_ij, 2) − E) / (½(Σ_i C(a_i, 2) + Σ_j C(b_j, 2)) − E) with
    /// E = Σ_i C(a_i, 2) · Σ_j C(b_j, 2) / C(n, 2); 1 for identical partitions, about 0 for independent ones.
    /// </summary>
    /// <exception cref="ArgumentException">Different lengths or empty input.</exception>
    public static double AdjustedRandIndex(ReadOnlySpan<long> a, ReadOnlySpan<long> b)
    {
        var table = ContingencyTable.Build(a, b);
        long n = table.N;
        int rows = table.RowSums.Length, columns = table.ColumnSums.Length;
        if (rows == columns && (rows == 1 || rows == n || table.Cells.Count == 0))
        {
            return 1.0;
        }

        static double Pairs(long m) => m * (m - 1) / 2.0;
        double cells = table.Cells.Values.Sum(Pairs);
        double rowPairs = table.RowSums.Sum(Pairs);
        double columnPairs = table.ColumnSums.Sum(Pairs);
        double expected = rowPairs * columnPairs / Pairs(n);
        double maximum = (rowPairs + columnPairs) / 2;
        return maximum == expected ? 1.0 : (cells - expected) / (maximum - expected);
    }

    private static bool IsTrivial(ContingencyTable table) =>
        (table.RowSums.Length == 1 && table.ColumnSums.Length == 1) || (table.RowSums.Length == 0 && table.ColumnSums.Length == 0);

    /// <summary>
    /// <see cref="NormalizedMutualInformation(ReadOnlySpan{long}, ReadOnlySpan{long})"/> of two integer label tensors
    /// <c>[n]</c> on any device (e.g. a level's <c>Assignments</c> and the dataset's labels); read to the host once.
    /// </summary>
    /// <exception cref="ArgumentException">Not 1-D integer tensors of one length, or empty.</exception>
    public static double NormalizedMutualInformation(TorchSharp.torch.Tensor a, TorchSharp.torch.Tensor b) =>
        NormalizedMutualInformation(HostLabels(a, nameof(a)), HostLabels(b, nameof(b)));

    /// <summary><see cref="AdjustedMutualInformation(ReadOnlySpan{long}, ReadOnlySpan{long})"/> of two integer label tensors <c>[n]</c> on any device.</summary>
    /// <exception cref="ArgumentException">Not 1-D integer tensors of one length, or empty.</exception>
    public static double AdjustedMutualInformation(TorchSharp.torch.Tensor a, TorchSharp.torch.Tensor b) =>
        AdjustedMutualInformation(HostLabels(a, nameof(a)), HostLabels(b, nameof(b)));

    /// <summary><see cref="AdjustedRandIndex(ReadOnlySpan{long}, ReadOnlySpan{long})"/> of two integer label tensors <c>[n]</c> on any device.</summary>
    /// <exception cref="ArgumentException">Not 1-D integer tensors of one length, or empty.</exception>
    public static double AdjustedRandIndex(TorchSharp.torch.Tensor a, TorchSharp.torch.Tensor b) =>
        AdjustedRandIndex(HostLabels(a, nameof(a)), HostLabels(b, nameof(b)));

    private static long[] HostLabels(TorchSharp.torch.Tensor labels, string name)
    {
        ArgumentNullException.ThrowIfNull(labels, name);
        if (labels.dim() != 1 || labels.is_floating_point() || labels.dtype == TorchSharp.torch.ScalarType.Bool)
        {
            throw new ArgumentException($"{name} must be a 1-D integer tensor of labels; got {Hcsc.Core.Tensors.TensorDescription.Describe(labels)}.", name);
        }

        using var host = labels.to(TorchSharp.torch.ScalarType.Int64, TorchSharp.torch.CPU).contiguous();
        return host.data<long>().ToArray();
    }
}
