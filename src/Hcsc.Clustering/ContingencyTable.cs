namespace Hcsc.Clustering;

/// <summary>The contingency table of two labelings of the same n items: n_ij, row sums a_i and column sums b_j.</summary>
internal sealed class ContingencyTable
{
    private ContingencyTable(long n, long[] rowSums, long[] columnSums, Dictionary<(int Row, int Column), long> cells)
    {
        N = n;
        RowSums = rowSums;
        ColumnSums = columnSums;
        Cells = cells;
    }

    public long N { get; }

    public long[] RowSums { get; }

    public long[] ColumnSums { get; }

    /// <summary>The non-zero cells n_ij.</summary>
    public Dictionary<(int Row, int Column), long> Cells { get; }

    public static ContingencyTable Build(ReadOnlySpan<long> a, ReadOnlySpan<long> b)
    {
        if (a.Length != b.Length)
        {
            throw new ArgumentException($"The two labelings must have the same length; got {a.Length} and {b.Length}.");
        }

        if (a.Length == 0)
        {
            throw new ArgumentException("The labelings are empty.");
        }

        var rowIds = new Dictionary<long, int>();
        var columnIds = new Dictionary<long, int>();
        var rows = new List<long>();
        var columns = new List<long>();
        var cells = new Dictionary<(int, int), long>();
        for (int i = 0; i < a.Length; i++)
        {
            if (!rowIds.TryGetValue(a[i], out int r))
            {
                r = rowIds.Count;
                rowIds.Add(a[i], r);
                rows.Add(0);
            }

            if (!columnIds.TryGetValue(b[i], out int c))
            {
                c = columnIds.Count;
                columnIds.Add(b[i], c);
                columns.Add(0);
            }

            rows[r]++;
            columns[c]++;
            cells[(r, c)] = cells.GetValueOrDefault((r, c)) + 1;
        }

        return new ContingencyTable(a.Length, rows.ToArray(), columns.ToArray(), cells);
    }

    /// <summary>Mutual information I(a; b) in nats: Σ_ij n_ij/n · ln(n · n_ij / (a_i b_j)).</summary>
    public double MutualInformation()
    {
        double n = N, mi = 0;
        foreach (var ((r, c), count) in Cells)
        {
            mi += count / n * Math.Log(n * count / ((double)RowSums[r] * ColumnSums[c]));
        }

        return Math.Max(mi, 0);
    }

    /// <summary>Entropy in nats of a labeling with these cluster sizes.</summary>
    public double Entropy(long[] sizes)
    {
        double n = N, h = 0;
        foreach (long s in sizes)
        {
            h -= s / n * Math.Log(s / n);
        }

        return Math.Max(h, 0);
    }

    /// <summary>
    /// E[I(a; b)] under the permutation (hypergeometric) model with fixed cluster sizes (Vinh, Epps and
    /// Bailey 2010): Σ_ij Σ_{n_ij = max(1, a_i + b_j − n)}^{min(a_i, b_j)} n_ij/n · ln(n·n_ij / (a_i b_j)) · P(n_ij),
    /// P the hypergeometric probability, evaluated with log-factorials.
    /// </summary>
    public double ExpectedMutualInformation()
    {
        long n = N;
        var logFactorial = new double[n + 1];
        for (long i = 2; i <= n; i++)
        {
            logFactorial[i] = logFactorial[i - 1] + Math.Log(i);
        }

        double expected = 0;
        foreach (long ai in RowSums)
        {
            foreach (long bj in ColumnSums)
            {
                long from = Math.Max(1, ai + bj - n), to = Math.Min(ai, bj);
                double constant = logFactorial[ai] + logFactorial[bj] + logFactorial[n - ai] + logFactorial[n - bj] - logFactorial[n];
                for (long nij = from; nij <= to; nij++)
                {
                    double logP = constant - logFactorial[nij] - logFactorial[ai - nij] - logFactorial[bj - nij] - logFactorial[n - ai - bj + nij];
                    expected += (double)nij / n * Math.Log((double)n * nij / ((double)ai * bj)) * Math.Exp(logP);
                }
            }
        }

        return expected;
    }
}
