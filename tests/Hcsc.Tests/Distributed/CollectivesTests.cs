using Hcsc.Core.Distributed;
using Hcsc.Distributed.Mpi;
using Hcsc.Models.Distributed;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Tests.Distributed;

/// <summary>
/// The communication layer in one process: <see cref="SingleProcessCollectives"/> is the identity, the tensor helpers
/// and <see cref="GradientAllReduce"/> leave everything unchanged with it, and take the right paths (host copies, buckets)
/// with a simulated group of identical ranks. The real MPI runs are <see cref="MpiLaunchTests"/>.
/// </summary>
public class CollectivesTests
{
    private static readonly ICollectives One = SingleProcessCollectives.Instance;

    [Fact]
    public void Single_process_operations_are_identities()
    {
        One.Rank.Should().Be(0);
        One.Size.Should().Be(1);
        float[] floats = [1.5f, -2];
        double[] doubles = [3];
        long[] longs = [long.MaxValue];
        One.AllReduceSum(floats);
        One.AllReduceSum(doubles);
        One.AllReduceSum(longs);
        floats.Should().Equal(1.5f, -2);
        doubles.Should().Equal(3);
        longs.Should().Equal(long.MaxValue);

        var gathered = new int[2];
        One.AllGather<int>([4, 5], gathered);
        gathered.Should().Equal(4, 5);
        One.AllGatherVariable<int>([6, 7, 8], out int[] counts).Should().Equal(6, 7, 8);
        counts.Should().Equal(3);

        int[] buffer = [9];
        One.Broadcast<int>(buffer, root: 0);
        buffer.Should().Equal(9);
        One.Barrier();
    }

    [Fact]
    public void Single_process_operations_check_their_arguments()
    {
        var wrongLength = () => One.AllGather<int>([1, 2], new int[3]);
        wrongLength.Should().Throw<ArgumentException>().WithMessage("*Size · n = 2*got 3*");
        var wrongRoot = () => One.Broadcast<int>(new int[1], root: 1);
        wrongRoot.Should().Throw<ArgumentOutOfRangeException>();
        using var t = ones(2);
        var wrongTensorRoot = () => One.Broadcast(t, root: 1);
        wrongTensorRoot.Should().Throw<ArgumentOutOfRangeException>();
        using var integers = ones(2, dtype: int64);
        var meanOfIntegers = () => One.AllReduceMean(integers);
        meanOfIntegers.Should().Throw<ArgumentException>().WithMessage("*float32 or float64*");
        using var bytes = ones(2, dtype: uint8);
        var sumOfBytes = () => One.AllReduceSum(bytes);
        sumOfBytes.Should().Throw<ArgumentException>().WithMessage("*float32, float64 or int64*");
        using var scalar = tensor(1f);
        var gatherScalar = () => One.AllGather(scalar);
        gatherScalar.Should().Throw<ArgumentException>().WithMessage("*scalar*");
    }

    [Fact]
    public void Tensor_helpers_change_nothing_in_one_process()
    {
        using var t = arange(6, dtype: float32).reshape(2, 3);
        using var before = t.clone();
        One.AllReduceSum(t);
        One.AllReduceMean(t);
        One.Broadcast(t, root: 0);
        t.Should().Match<Tensor>(x => x.allclose(before, rtol: 0, atol: 0));
        using var gathered = One.AllGather(t);
        gathered.Handle.Should().NotBe(t.Handle, "a new tensor, which the caller disposes");
        gathered.allclose(before, rtol: 0, atol: 0).Should().BeTrue();
    }

    [Fact]
    public void Tensor_helpers_reduce_views_through_a_host_copy_and_write_back()
    {
        var two = new MirroredCollectives(2);
        using var storage = arange(6, dtype: float32).reshape(2, 3);
        using var view = storage.t();
        two.AllReduceSum(view);
        storage.data<float>().ToArray().Should().Equal(0, 2, 4, 6, 8, 10);
        two.AllReduceMean(view);
        storage.data<float>().ToArray().Should().Equal(0, 2, 4, 6, 8, 10);
        using var counts = tensor(new long[] { 3, 1L << 40 });
        two.AllReduceSum(counts);
        counts.data<long>().ToArray().Should().Equal(6, 1L << 41);

        using var rows = tensor(new[] { 1, 2, 3 }).reshape(1, 3);
        using var gathered = two.AllGather(rows);
        gathered.shape.Should().Equal(2, 3);
        gathered.data<int>().ToArray().Should().Equal(1, 2, 3, 1, 2, 3);
    }

    [Fact]
    public void Gradient_averaging_is_the_identity_in_one_process()
    {
        using var model = SmallModel(out var unused);
        Backward(model);
        var before = model.parameters().Select(p => p.grad?.clone()).ToList();

        new GradientAllReduce(One).Average(model).Should().Be(0, "nothing is communicated");

        foreach (var (parameter, expected) in model.parameters().Zip(before))
        {
            if (expected is null)
            {
                parameter.grad.Should().BeNull();
                continue;
            }

            parameter.grad!.allclose(expected, rtol: 0, atol: 0).Should().BeTrue();
            expected.Dispose();
        }

        unused.grad.Should().BeNull();
    }

    [Fact]
    public void Gradient_averaging_fills_buckets_in_parameter_order()
    {
        using var model = SmallModel(out var unused);
        Backward(model);
        var before = model.parameters().Where(p => p.grad is not null).Select(p => p.grad!.clone()).ToList();
        var two = new MirroredCollectives(2);

        // fc1 weight [8, 4] + bias [8] = 160 bytes, fc2 weight [2, 8] + bias [2] = 72 bytes; "unused" has no gradient.
        new GradientAllReduce(two).Average(model).Should().Be(1);
        new GradientAllReduce(two, bucketBytes: 160).Average(model).Should().Be(2);
        new GradientAllReduce(two, bucketBytes: 1).Average(model).Should().Be(4, "a parameter larger than a bucket gets its own");
        two.Reductions.Should().Be(3 + 7, "one flag reduction per call, then one per bucket");

        // Identical ranks: the mean of equal gradients is the gradient, bit for bit.
        foreach (var (gradient, expected) in model.parameters().Where(p => p.grad is not null).Select(p => p.grad!).Zip(before))
        {
            gradient.allclose(expected, rtol: 0, atol: 0).Should().BeTrue();
            expected.Dispose();
        }

        unused.grad.Should().BeNull("no rank has a gradient for it");
        var badBucket = () => new GradientAllReduce(One, bucketBytes: 0);
        badBucket.Should().Throw<ArgumentOutOfRangeException>();
    }

    [Fact]
    public void The_parameter_checksum_is_deterministic_and_sees_one_changed_value()
    {
        using var a = SmallModel(out _);
        using var b = SmallModel(out _);
        string checksum = ParameterChecksum.Compute(a);
        checksum.Should().MatchRegex("^[0-9a-f]{64}$");
        ParameterChecksum.Compute(b).Should().Be(checksum, "the same seed builds the same weights");

        using (no_grad())
        {
            using var one = ones(1);
            using var weight = b.parameters().Last().view(-1);
            using var first = weight.narrow(0, 0, 1);
            first.add_(one, alpha: 1e-7);
        }

        ParameterChecksum.Compute(b).Should().NotBe(checksum);
        ParameterChecksum.VerifyIdentical(b, One);
        ParameterChecksum.VerifyIdentical(a, new MirroredCollectives(3));
    }

    [Fact]
    public void Buffers_count_unless_left_out()
    {
        torch.manual_seed(3);
        using var model = nn.Sequential(("fc", nn.Linear(2, 3)), ("bn", nn.BatchNorm1d(3)));
        string all = ParameterChecksum.Compute(model);
        string parametersOnly = ParameterChecksum.Compute(model, includeBuffers: false);
        model.train();
        using (var x = randn(4, 2))
        using (var y = model.call(x))
        {
        }

        ParameterChecksum.Compute(model).Should().NotBe(all, "the running statistics moved");
        ParameterChecksum.Compute(model, includeBuffers: false).Should().Be(parametersOnly);
    }

    [Fact]
    public void Mpi_refuses_to_start_without_a_launcher()
    {
        if (MpiCollectives.IsLaunchedByMpi)
        {
            return; // the tests themselves run under mpirun
        }

        var start = () => MpiCollectives.Initialize();
        start.Should().Throw<InvalidOperationException>().WithMessage("*mpirun -np 2 dotnet hcsc-pretrain.dll pretrain --distributed mpi*srun --mpi=pmix*");
    }

    [Fact]
    public void Mpi_says_how_to_install_Open_MPI_when_the_library_is_missing()
    {
        var start = () => MpiCollectives.Initialize(requireLauncher: false, libraryPath: "/nonexistent/libmpi.so.40");
        start.Should().Throw<DllNotFoundException>()
            .WithMessage("*/nonexistent/libmpi.so.40*apt-get install openmpi-bin libopenmpi-dev*HCSC_LIBMPI*");
    }

    [Fact]
    public void Mpi_refuses_a_library_that_is_not_Open_MPI()
    {
        var start = () => MpiCollectives.Initialize(requireLauncher: false, libraryPath: "libm.so.6");
        start.Should().Throw<NotSupportedException>().WithMessage("*not Open MPI's*");
    }

    /// <summary>Linear(4, 8) → ReLU → Linear(8, 2) from a fixed seed, and a parameter the forward pass does not use.</summary>
    private static nn.Module<Tensor, Tensor> SmallModel(out TorchSharp.Modules.Parameter unused)
    {
        torch.manual_seed(42);
        var model = nn.Sequential(("fc1", nn.Linear(4, 8)), ("relu", nn.ReLU()), ("fc2", nn.Linear(8, 2)));
        unused = new TorchSharp.Modules.Parameter(zeros(3));
        model.register_parameter("unused", unused);
        return model;
    }

    private static void Backward(nn.Module<Tensor, Tensor> model)
    {
        using var x = arange(12, dtype: float32).reshape(3, 4);
        using var y = model.call(x);
        using var loss = y.square().mean();
        loss.backward();
    }

    /// <summary>
    /// A simulated group of <c>size</c> ranks that all hold the same values as this one: sums are the values times the
    /// size, gathers repeat the block. Counts the reductions.
    /// </summary>
    private sealed class MirroredCollectives(int size) : ICollectives
    {
        public int Reductions { get; private set; }

        public int Rank => 0;

        public int Size => size;

        public void AllReduceSum(Span<float> values)
        {
            Reductions++;
            foreach (ref float v in values)
            {
                v *= size;
            }
        }

        public void AllReduceSum(Span<double> values)
        {
            Reductions++;
            foreach (ref double v in values)
            {
                v *= size;
            }
        }

        public void AllReduceSum(Span<long> values)
        {
            Reductions++;
            foreach (ref long v in values)
            {
                v *= size;
            }
        }

        public void AllGather<T>(ReadOnlySpan<T> local, Span<T> gathered)
            where T : unmanaged
        {
            gathered.Length.Should().Be(local.Length * size);
            for (int r = 0; r < size; r++)
            {
                local.CopyTo(gathered[(r * local.Length)..]);
            }
        }

        public T[] AllGatherVariable<T>(ReadOnlySpan<T> local, out int[] counts)
            where T : unmanaged
        {
            counts = Enumerable.Repeat(local.Length, size).ToArray();
            var all = new T[local.Length * size];
            AllGather(local, all);
            return all;
        }

        public void Broadcast<T>(Span<T> buffer, int root)
            where T : unmanaged
        {
        }

        public void Barrier()
        {
        }
    }
}
