using Hcsc.Core.Options;

namespace Hcsc.Tests.Losses;

/// <summary>A direct, double-precision, loop-by-loop transcription of docs/method.md §1 and §3–§5 (no TorchSharp), for comparison.</summary>
public static class NaiveHcsc
{
    public static double Dot(double[] a, double[] b) => a.Zip(b, (x, y) => x * y).Sum();

    public static double LogSumExp(IEnumerable<double> values)
    {
        var v = values.ToArray();
        double m = v.Max();
        return m + Math.Log(v.Sum(x => Math.Exp(x - m)));
    }

    /// <summary>p_l(c | z) over all c.</summary>
    public static double[] Membership(double[] z, double[][] prototypes, double[] phi)
    {
        var logits = prototypes.Select((c, i) => Dot(z, c) / Math.Max(phi[i], 1e-3)).ToArray();
        double lse = LogSumExp(logits);
        return logits.Select(x => Math.Exp(x - lse)).ToArray();
    }

    /// <summary>accept[n][j] = 1 − p_l(y_n | z_j).</summary>
    public static double[][] InstanceAcceptance(double[][] queue, long[] labels, double[][] prototypes, double[] phi) =>
        labels.Select(y => queue.Select(z => 1 - Membership(z, prototypes, phi)[y]).ToArray()).ToArray();

    /// <summary>accept[n][c] = 1 − softmax_p(S[c,p]/φ'(p)) at p = parent(c⁺_n).</summary>
    public static double[][] PrototypeAcceptance(long[] labels, double[][] prototypes, double[][] parentPrototypes, long[] parents, double[] parentPhi, double tau)
    {
        double mean = parentPhi.Average();
        var rescaled = parentPhi.Select(f => tau * f / mean).ToArray();
        return labels.Select(y =>
        {
            long p = parents[y];
            return prototypes.Select(c =>
            {
                var logits = parentPrototypes.Select((pp, i) => Dot(c, pp) / rescaled[i]).ToArray();
                return 1 - Math.Exp(logits[p] - LogSumExp(logits));
            }).ToArray();
        }).ToArray();
    }

    /// <summary>CE over [positive, negatives] where each negative is selected, unselected (logit 0 or excluded) or absent.</summary>
    public static double SelectiveCe(double positive, double[] negatives, Func<int, bool> selected, Func<int, bool> present, UnselectedNegativeHandling handling)
    {
        var terms = new List<double> { positive };
        for (int j = 0; j < negatives.Length; j++)
        {
            if (!present(j))
            {
                continue;
            }

            if (selected(j))
            {
                terms.Add(negatives[j]);
            }
            else if (handling == UnselectedNegativeHandling.ZeroLogit)
            {
                terms.Add(0);
            }
        }

        return LogSumExp(terms) - positive;
    }

    public static double Icsc(double[][] q, double[][] k, double[][] queue, double[][]? mask, double tau, UnselectedNegativeHandling handling) =>
        Enumerable.Range(0, q.Length).Average(n => SelectiveCe(
            Dot(q[n], k[n]) / tau,
            queue.Select(z => Dot(q[n], z) / tau).ToArray(),
            j => mask is null || mask[n][j] > 0.5,
            _ => true,
            handling));

    public static bool[] Candidates(long[] labels, int count, long[] assignments, bool offByOne)
    {
        long bound = offByOne ? assignments.Max() : count;
        return Enumerable.Range(0, count).Select(c => c < bound && !labels.Contains(c)).ToArray();
    }

    public static double Pcsc(double[][] q, long[] labels, double[][] prototypes, double[] phi, bool[] candidates, double[][] mask, UnselectedNegativeHandling handling) =>
        Enumerable.Range(0, q.Length).Average(n => SelectiveCe(
            Dot(q[n], prototypes[labels[n]]) / phi[labels[n]],
            prototypes.Select((c, i) => Dot(q[n], c) / phi[i]).ToArray(),
            c => mask[n][c] > 0.5,
            c => candidates[c],
            handling));
}
