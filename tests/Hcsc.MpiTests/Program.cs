using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using Hcsc.Core.Distributed;
using Hcsc.Distributed.Mpi;
using Hcsc.Models.Distributed;
using Hcsc.Tests;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.MpiTests;

/// <summary>
/// Checks the MPI collectives, the tensor helpers and the gradient averaging against hand-computed values on every rank
/// of an <c>mpirun -np N</c> job (N ≥ 2 dividing 24). Prints one line per check on rank 0, every mismatch on the rank that
/// saw it, and a summary; exits 1 when any rank saw a mismatch (the launcher then reports a non-zero status), 2 on an
/// unexpected exception (after MPI_Abort, so that no rank waits forever).
/// </summary>
public static class Program
{
    /// <summary>ResNet-18's parameter count: the size of the timed all-reduce.</summary>
    private const int ResNet18Parameters = 11_689_512;

    public static int Main(string[] args)
    {
        torch.set_num_threads(1);
        Hcsc.Runtime.TorchRuntime.Prepare();
        using var mpi = MpiCollectives.Initialize();
        var checks = new Checks(mpi);
        try
        {
            if (mpi.Rank == 0)
            {
                Console.WriteLine($"{mpi.Size} ranks, {mpi.LibraryVersion} ({mpi.LibraryPath})");
            }

            checks.Run();
            if (!args.Contains("--no-benchmark"))
            {
                checks.TimeAllReduce(ResNet18Parameters, repeats: 5);
            }
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"rank {mpi.Rank}: unexpected {e}");
            Console.Error.Flush();
            mpi.Abort(2);
        }

        Span<long> failures = [checks.Failures];
        mpi.AllReduceSum(failures);
        if (mpi.Rank == 0)
        {
            Console.WriteLine(failures[0] == 0
                ? $"MPI tests passed: {checks.Count} checks on each of {mpi.Size} ranks"
                : $"MPI tests FAILED: {failures[0]} failed checks over {mpi.Size} ranks");
        }

        return failures[0] == 0 ? 0 : 1;
    }
}

/// <summary>The checks; each rank runs the same sequence of collectives.</summary>
internal sealed class Checks(MpiCollectives mpi)
{
    private readonly int _rank = mpi.Rank;
    private readonly int _size = mpi.Size;

    public int Count { get; private set; }

    public int Failures { get; private set; }

    public void Run()
    {
        Check(_size >= 2 && 24 % _size == 0, "world size", $"run with 2, 3, 4, 6 or 8 ranks; got {_size}");
        Spans();
        TensorHelpers();
        GradientAveraging();
        UnusedParameterOnOneRank();
        Checksums();
        ManagedNullReferenceAfterInit();
        new KMeansChecks(mpi, Check).Run();
        new TrainingChecks(mpi, Check).Run();
    }

    /// <summary>Times an all-reduce of <paramref name="count"/> float32 values (the median of <paramref name="repeats"/>, after one warm-up).</summary>
    public void TimeAllReduce(int count, int repeats)
    {
        var values = new float[count];
        var times = new List<double>();
        for (int i = 0; i <= repeats; i++)
        {
            Array.Fill(values, _rank + 1f);
            mpi.Barrier();
            var clock = Stopwatch.StartNew();
            mpi.AllReduceSum(values);
            double ms = clock.Elapsed.TotalMilliseconds;
            if (i > 0)
            {
                times.Add(ms);
            }
        }

        float expected = _size * (_size + 1) / 2f;
        Check(values[0] == expected && values[count / 2] == expected && values[^1] == expected, "timed all-reduce result",
            $"expected {expected}, got {values[0]}, {values[count / 2]}, {values[^1]}");
        Span<double> median = [times.Order().ElementAt(times.Count / 2)];
        mpi.AllReduceSum(median); // the mean of the ranks' medians
        if (_rank == 0)
        {
            double ms = median[0] / _size;
            Console.WriteLine(string.Create(
                CultureInfo.InvariantCulture,
                $"allreduce of {count:N0} float32 ({count * 4.0 / 1e6:F1} MB) between {_size} ranks: {ms:F1} ms " +
                $"(median of {repeats}; {count * 4.0 / 1e9 / (ms / 1e3):F2} GB/s of buffer)"));
        }
    }

    private void Spans()
    {
        int n = _size;
        long triangle = n * (n + 1L) / 2; // Σ (r + 1)

        float[] floats = [_rank + 1, 10f * (_rank + 1), -0.5f];
        mpi.AllReduceSum(floats);
        Check(floats.SequenceEqual([triangle, 10f * triangle, -0.5f * n]), "AllReduceSum float", Show(floats));

        double[] doubles = [Math.Pow(2, -_rank), 1e300, 1];
        mpi.AllReduceSum(doubles);
        double powers = Enumerable.Range(0, n).Sum(r => Math.Pow(2, -r));
        Check(doubles.SequenceEqual([powers, 1e300 * n, n]), "AllReduceSum double", Show(doubles));

        long[] longs = [(1L << 40) + _rank, -_rank];
        mpi.AllReduceSum(longs);
        Check(longs.SequenceEqual([n * (1L << 40) + triangle - n, -(triangle - n)]), "AllReduceSum long (64-bit)", Show(longs));

        mpi.AllReduceSum(Span<float>.Empty);
        Check(true, "AllReduceSum of an empty span", "");

        int[] local = [100 * _rank, 100 * _rank + 1, 100 * _rank + 2];
        var gathered = new int[3 * n];
        mpi.AllGather<int>(local, gathered);
        var expectedGather = Enumerable.Range(0, n).SelectMany(r => new[] { 100 * r, 100 * r + 1, 100 * r + 2 });
        Check(gathered.SequenceEqual(expectedGather), "AllGather int", Show(gathered));

        (int Rank, double Value)[] pairs = [(_rank, _rank * 0.25), (-_rank, 3)];
        var gatheredPairs = new (int, double)[2 * n];
        mpi.AllGather<(int, double)>(pairs, gatheredPairs);
        var expectedPairs = Enumerable.Range(0, n).SelectMany(r => new[] { (r, r * 0.25), (-r, 3.0) });
        Check(gatheredPairs.SequenceEqual(expectedPairs), "AllGather of a 16-byte struct", string.Join(" ", gatheredPairs));

        bool threw = false;
        try
        {
            mpi.AllGather<int>(local, new int[3 * n + 1]);
        }
        catch (ArgumentException)
        {
            threw = true;
        }

        Check(threw, "AllGather refuses a receive span of the wrong length", "no exception");

        // Rank r gives r elements of value r (rank 0 none): counts [0, 1, …, n − 1].
        var variable = mpi.AllGatherVariable<short>(Enumerable.Repeat((short)_rank, _rank).ToArray(), out int[] counts);
        var expectedVariable = Enumerable.Range(0, n).SelectMany(r => Enumerable.Repeat((short)r, r));
        Check(counts.SequenceEqual(Enumerable.Range(0, n)) && variable.SequenceEqual(expectedVariable), "AllGatherVariable (uneven, one empty)",
            $"counts {Show(counts)}, values {Show(variable)}");

        int root = n - 1;
        double[] broadcast = _rank == root ? [7, 8.5, -9] : [0, 0, 0];
        mpi.Broadcast<double>(broadcast, root);
        Check(broadcast.SequenceEqual([7, 8.5, -9]), $"Broadcast from rank {root}", Show(broadcast));

        // Rank 0 arrives late: every other rank waits for it in the barrier.
        if (_rank == 0)
        {
            Thread.Sleep(400);
        }

        var clock = Stopwatch.StartNew();
        mpi.Barrier();
        double waited = clock.Elapsed.TotalMilliseconds;
        Check(_rank == 0 || waited >= 300, "Barrier waits for the last rank", $"rank {_rank} waited {waited:F0} ms, expected ≥ 300");
    }

    private void TensorHelpers()
    {
        int n = _size;
        float triangle = n * (n + 1) / 2f;
        using var basis = arange(12, dtype: float32).reshape(3, 4);

        using (var t = basis * (float)(_rank + 1))
        using (var expected = basis * triangle)
        {
            mpi.AllReduceSum(t);
            Check(t.allclose(expected, rtol: 0, atol: 0), "AllReduceSum of a contiguous CPU tensor", t.ToString(TorchSharp.TensorStringStyle.Julia));
        }

        // A transposed view (not contiguous): reduced through a host copy and written back into the view.
        using (var storage = basis * (float)(_rank + 1))
        using (var expected = basis * (triangle / n))
        {
            var view = storage.t();
            mpi.AllReduceMean(view);
            Check(view.is_contiguous() == false && storage.allclose(expected, rtol: 1e-6, atol: 0), "AllReduceMean of a non-contiguous view",
                storage.ToString(TorchSharp.TensorStringStyle.Julia));
        }

        using (var counts = tensor(new long[] { _rank, 1L << 35 }))
        {
            mpi.AllReduceSum(counts);
            Check(counts.data<long>().ToArray().SequenceEqual([n * (n - 1L) / 2, n * (1L << 35)]), "AllReduceSum of an int64 tensor",
                Show(counts.data<long>().ToArray()));
        }

        using (var parameter = torch.ones(4, dtype: float64).requires_grad_())
        {
            mpi.AllReduceSum(parameter);
            Check(parameter.data<double>().ToArray().All(v => v == n), "AllReduceSum of a leaf that requires grad", Show(parameter.data<double>().ToArray()));
        }

        using (var values = _rank == 0 ? tensor(new[] { 1.5f, 2.5f, 3.5f }) : zeros(3))
        {
            mpi.Broadcast(values, root: 0);
            Check(values.data<float>().ToArray().SequenceEqual([1.5f, 2.5f, 3.5f]), "Broadcast of a tensor", Show(values.data<float>().ToArray()));
        }

        using (var rows = full(2, 3, _rank, dtype: int32))
        using (var gathered = mpi.AllGather(rows))
        {
            var expected = Enumerable.Range(0, n).SelectMany(r => Enumerable.Repeat(r, 6));
            Check(gathered.shape.SequenceEqual([2L * n, 3]) && gathered.data<int>().ToArray().SequenceEqual(expected),
                "AllGather of a tensor along dimension 0", gathered.ToString(TorchSharp.TensorStringStyle.Julia));
        }
    }

    /// <summary>
    /// Two ranks each computing the gradient of the mean loss on their half of a batch, averaged, equal the gradient of one
    /// process on the whole batch (the mean loss), for the default buckets and for buckets so small that every parameter
    /// gets its own.
    /// </summary>
    private void GradientAveraging()
    {
        const int batch = 24;
        torch.manual_seed(20260101);
        using var model = nn.Sequential(("fc1", nn.Linear(5, 16)), ("relu", nn.ReLU()), ("fc2", nn.Linear(16, 3)));
        using var inputs = randn(batch, 5);
        using var targets = randn(batch, 3);

        // One process, the whole batch.
        model.zero_grad();
        using (var loss = nn.functional.mse_loss(model.call(inputs), targets))
        {
            loss.backward();
        }

        var reference = model.parameters().Select(p => p.grad!.clone()).ToList();

        foreach (long bucketBytes in new[] { GradientAllReduce.DefaultBucketBytes, 64L })
        {
            // This rank's shard: rows [rank · B/N, (rank + 1) · B/N), the mean loss over it.
            model.zero_grad();
            int shard = batch / _size;
            using (var x = inputs.narrow(0, _rank * shard, shard))
            using (var y = targets.narrow(0, _rank * shard, shard))
            using (var loss = nn.functional.mse_loss(model.call(x), y))
            {
                loss.backward();
            }

            int buckets = new GradientAllReduce(mpi, bucketBytes).Average(model);
            double worst = 0;
            foreach (var (parameter, expected) in model.parameters().Zip(reference))
            {
                using var difference = parameter.grad! - expected;
                worst = Math.Max(worst, difference.norm().item<float>() / Math.Max(expected.norm().item<float>(), 1e-30));
            }

            // The whole batch's gradient sums the same per-sample terms as the ranks' average, in another order.
            double tolerance = FloatBounds.Sum(batch, 1, FloatBounds.Float32);
            Check(worst <= tolerance && buckets == (bucketBytes == 64 ? 4 : 1),
                $"GradientAllReduce ({buckets} bucket{(buckets == 1 ? "" : "s")}) = the whole batch's gradient",
                $"relative error {worst:E2} (at most {tolerance:E1}), {buckets} buckets");
            if (_rank == 0)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"    relative error {worst:E2}"));
            }
        }

        foreach (var g in reference)
        {
            g.Dispose();
        }
    }

    /// <summary>A parameter used on every rank but 0: rank 0 gets the average too (its gradient there counts as zero).</summary>
    private void UnusedParameterOnOneRank()
    {
        using var layer = nn.Linear(3, 1);
        using var x = arange(6, dtype: float32).reshape(2, 3) + (float)_rank; // rows of rank r: [0 1 2] + r, [3 4 5] + r
        layer.zero_grad();
        if (_rank != 0)
        {
            using var output = layer.call(x).sum();
            output.backward();
        }

        new GradientAllReduce(mpi).Average(layer);
        // d/dW Σ (W·x + b) = Σ over rows of x = [3, 5, 7] + 2r; d/db = 2 rows. Averaged over N ranks, rank 0 contributing 0.
        var expectedWeight = Enumerable.Range(0, 3).Select(j => Enumerable.Range(1, _size - 1).Sum(r => 3f + 2 * j + 2 * r) / _size);
        float expectedBias = 2f * (_size - 1) / _size;
        var weightGrad = layer.weight!.grad;
        var biasGrad = layer.bias!.grad;
        Check(weightGrad is not null && biasGrad is not null
              && weightGrad.data<float>().ToArray().Zip(expectedWeight).All(p => Math.Abs(p.First - p.Second) <= 1e-6f * Math.Abs(p.Second))
              && Math.Abs(biasGrad.item<float>() - expectedBias) <= 1e-6f,
            "GradientAllReduce: a parameter unused on rank 0 gets the average there",
            weightGrad is null ? "no gradient" : Show(weightGrad.data<float>().ToArray()));
    }

    private void Checksums()
    {
        torch.manual_seed(5);
        using var model = nn.Sequential(("fc1", nn.Linear(4, 8)), ("bn", nn.BatchNorm1d(8)));
        string checksum = ParameterChecksum.Compute(model);
        ParameterChecksum.VerifyIdentical(model, mpi);
        Check(checksum.Length == 64, "ParameterChecksum equal on every rank after the same seed", checksum);

        if (_rank == _size - 1)
        {
            using var noGrad = no_grad();
            using var one = ones(1);
            using var flat = model.parameters().First().view(-1);
            flat.narrow(0, 0, 1).add_(one, alpha: 1e-6);
        }

        string? message = null;
        try
        {
            ParameterChecksum.VerifyIdentical(model, mpi);
        }
        catch (InvalidOperationException e)
        {
            message = e.Message;
        }

        Check(message is not null && message.Contains($"rank {_size - 1}", StringComparison.Ordinal), "ParameterChecksum finds a rank whose weights differ",
            message ?? "no exception");
    }

    /// <summary>Open MPI installs signal handlers in MPI_Init; .NET's null-reference handling (SIGSEGV) must still work.</summary>
    private void ManagedNullReferenceAfterInit()
    {
        bool caught = false;
        try
        {
            _ = Length(null);
        }
        catch (NullReferenceException)
        {
            caught = true;
        }

        Check(caught, "a NullReferenceException after MPI_Init is a managed exception", "not caught");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int Length(string? text) => text!.Length;

    private void Check(bool ok, string name, string detail)
    {
        Count++;
        if (!ok)
        {
            Failures++;
            Console.Error.WriteLine($"rank {_rank}: FAIL {name}: {detail}");
        }
        else if (_rank == 0)
        {
            Console.WriteLine($"ok  {name}");
        }
    }

    private static string Show<T>(IEnumerable<T> values) => "[" + string.Join(", ", values) + "]";
}
