using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Tests.Clustering;

/// <summary>Small seeded data sets and double-precision reference computations for the clustering tests.</summary>
internal static class ClusteringTestData
{
    /// <summary>Gaussian blobs: <paramref name="blobs"/> centres spread by <paramref name="spread"/>, points with unit noise scaled by <paramref name="noise"/>; row i belongs to blob i % blobs.</summary>
    public static (float[,] Points, long[] Labels) Blobs(int n, int d, int blobs, double spread, double noise, int seed)
    {
        var random = new Random(seed);
        var centres = new double[blobs, d];
        for (int b = 0; b < blobs; b++)
        {
            for (int j = 0; j < d; j++)
            {
                centres[b, j] = spread * Gaussian(random);
            }
        }

        var points = new float[n, d];
        var labels = new long[n];
        for (int i = 0; i < n; i++)
        {
            labels[i] = i % blobs;
            for (int j = 0; j < d; j++)
            {
                points[i, j] = (float)(centres[labels[i], j] + (noise * Gaussian(random)));
            }
        }

        return (points, labels);
    }

    public static Tensor ToTensor(float[,] values) => tensor(values);

    public static double[,] ToDoubles(Tensor t)
    {
        var cpu = t.to(ScalarType.Float64).cpu().contiguous();
        long rows = cpu.shape[0], cols = cpu.shape[1];
        var flat = cpu.data<double>().ToArray();
        var result = new double[rows, cols];
        for (long i = 0; i < rows; i++)
        {
            for (long j = 0; j < cols; j++)
            {
                result[i, j] = flat[(i * cols) + j];
            }
        }

        return result;
    }

    public static long[] ToLongs(Tensor t) => t.cpu().data<long>().ToArray();

    public static double[] ToDoubleArray(Tensor t) => t.to(ScalarType.Float64).cpu().data<double>().ToArray();

    /// <summary>Brute-force nearest centre in double precision: index, squared distance and the gap to the second nearest.</summary>
    public static (long[] Index, double[] Distance, double[] Gap) BruteForce(double[,] points, double[,] centres)
    {
        int n = points.GetLength(0), k = centres.GetLength(0), d = points.GetLength(1);
        var index = new long[n];
        var distance = new double[n];
        var gap = new double[n];
        for (int i = 0; i < n; i++)
        {
            double best = double.PositiveInfinity, second = double.PositiveInfinity;
            for (int c = 0; c < k; c++)
            {
                double sum = 0;
                for (int j = 0; j < d; j++)
                {
                    double diff = points[i, j] - centres[c, j];
                    sum += diff * diff;
                }

                if (sum < best)
                {
                    second = best;
                    best = sum;
                    index[i] = c;
                }
                else if (sum < second)
                {
                    second = sum;
                }
            }

            distance[i] = best;
            gap[i] = second - best;
        }

        return (index, distance, gap);
    }

    private static double Gaussian(Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
}
