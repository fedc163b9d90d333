using Hcsc.Models.Checkpoints;
using Hcsc.Models.Optimization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Hcsc.Tests.Models;

public class ExplicitScalarSgdTests
{
    private const int Steps = 6;

    [Theory]
    [InlineData(0.9, 0.0, 1e-2, false)]
    [InlineData(0.9, 0.25, 1e-2, false)]
    [InlineData(0.9, 0.0, 0.0, true)]
    [InlineData(0.0, 0.0, 5e-2, false)]
    public void Steps_follow_the_SGD_formula_computed_in_double_precision(double momentum, double dampening, double weightDecay, bool nesterov)
    {
        const double lr = 0.3;
        double[] initial = [0.5, -1.25, 2.0, 0.75, -0.1, 3.0];
        using var parameter = new Parameter(tensor(initial.Select(v => (float)v).ToArray()));
        using var optimizer = new ExplicitScalarSgd([parameter], lr, momentum, dampening, weightDecay, nesterov);

        var expected = (double[])initial.Clone();
        var buffer = new double[initial.Length];
        for (int step = 0; step < Steps; step++)
        {
            double[] gradient = Gradient(step, initial.Length);
            SetGradient(optimizer, parameter, gradient);
            optimizer.step();

            for (int i = 0; i < expected.Length; i++)
            {
                double d = gradient[i] + (weightDecay * expected[i]);
                if (momentum != 0)
                {
                    buffer[i] = step == 0 ? d : (momentum * buffer[i]) + ((1 - dampening) * d);
                    d = nesterov ? d + (momentum * buffer[i]) : buffer[i];
                }

                expected[i] -= lr * d;
            }

            // Each step adds a few rounded float32 operations on values ≲ 30 (the momentum buffer grows to |g|/(1 − m)).
            float tolerance = (float)((step + 1) * FloatBounds.Sum(0, 30, FloatBounds.Float32));
            var actual = parameter.data<float>().ToArray();
            for (int i = 0; i < expected.Length; i++)
            {
                actual[i].Should().BeApproximately((float)expected[i], tolerance, $"element {i} after step {step + 1}");
            }
        }
    }

    [Fact]
    public void Matches_TorchSharps_SGD_bit_for_bit_with_two_parameter_groups()
    {
        using var ours = Parameters(seed: 3);
        using var theirs = Parameters(seed: 3);
        using var optimizer = new ExplicitScalarSgd(Groups(ours), 0.1, momentum: 0.9, weightDecay: 1e-4);
        using var reference = torch.optim.SGD(Groups(theirs), 0.1, momentum: 0.9, weight_decay: 1e-4);
        for (int step = 0; step < Steps; step++)
        {
            Train(optimizer, ours, step);
            Train(reference, theirs, step);
        }

        foreach (var (a, b) in ours.Zip(theirs))
        {
            a.data<float>().ToArray().Should().Equal(b.data<float>().ToArray(), "the same operations in the same order give the same floats");
        }
    }

    [Fact]
    public void State_saved_by_TorchSharps_SGD_resumes_in_ours_and_continues_identically()
    {
        using var ours = Parameters(seed: 5);
        using var theirs = Parameters(seed: 5);
        using var reference = torch.optim.SGD(theirs, 0.05, momentum: 0.9, weight_decay: 1e-4);
        for (int step = 0; step < 3; step++)
        {
            Train(reference, theirs, step);
        }

        using (no_grad())
        {
            foreach (var (a, b) in ours.Zip(theirs))
            {
                a.copy_(b);
            }
        }

        using var saved = new MemoryStream();
        reference.save_state_dict(new BinaryWriter(saved));
        saved.Position = 0;
        using var optimizer = new ExplicitScalarSgd(ours, 0.05, momentum: 0.9, weightDecay: 1e-4);
        OptimizerStateFormat.Load(new BinaryReader(saved), optimizer, "the saved state");

        for (int step = 3; step < Steps; step++)
        {
            Train(reference, theirs, step);
            Train(optimizer, ours, step);
        }

        foreach (var (a, b) in ours.Zip(theirs))
        {
            a.data<float>().ToArray().Should().Equal(b.data<float>().ToArray(), "the momentum buffers came across, so the next steps agree");
        }
    }

    [Fact]
    public void State_of_another_optimiser_or_model_is_refused_with_what_differs()
    {
        using var parameters = Parameters(seed: 1);
        using var adam = torch.optim.Adam(parameters, 0.01);
        using var saved = new MemoryStream();
        adam.save_state_dict(new BinaryWriter(saved));
        using var optimizer = new ExplicitScalarSgd(parameters, 0.05, momentum: 0.9);
        saved.Position = 0;
        var act = () => OptimizerStateFormat.Load(new BinaryReader(saved), optimizer, "'run/checkpoint.pth'");
        act.Should().Throw<InvalidDataException>().WithMessage("'run/checkpoint.pth' holds the state of optimiser Adam; this run uses ExplicitScalarSgd.");

        using var fewer = new ExplicitScalarSgd(parameters.Take(1), 0.05, momentum: 0.9);
        using var other = new MemoryStream();
        optimizer.save_state_dict(new BinaryWriter(other));
        other.Position = 0;
        act = () => OptimizerStateFormat.Load(new BinaryReader(other), fewer, "'run/checkpoint.pth'");
        act.Should().Throw<InvalidDataException>().WithMessage("*1 parameter group(s) and 2 parameter(s); this model has 1 and 1.");
    }

    [Fact]
    public void Parameters_without_gradients_are_left_alone()
    {
        using var used = new Parameter(ones(3));
        using var unused = new Parameter(ones(3));
        using var optimizer = new ExplicitScalarSgd([used, unused], 0.1, momentum: 0.9, weightDecay: 0.1);
        SetGradient(optimizer, used, [1, 1, 1]);
        optimizer.step();
        unused.data<float>().ToArray().Should().Equal(1f, 1f, 1f);
        used.data<float>().ToArray().Should().AllSatisfy(v => v.Should().BeApproximately(1f - (0.1f * 1.1f), 1e-6f));
    }

    private static double[] Gradient(int step, int length) =>
        Enumerable.Range(0, length).Select(i => Math.Sin((step + 1) * (i + 1.5)) * (1 + (0.3 * step))).ToArray();

    // loss = Σ g_i·p_i gives gradient g exactly.
    private static void SetGradient(OptimizerHelper optimizer, Parameter parameter, double[] gradient)
    {
        optimizer.zero_grad();
        using var scope = NewDisposeScope();
        using var weights = tensor(gradient.Select(v => (float)v).ToArray());
        parameter.mul(weights).sum().backward();
    }

    private static void Train(OptimizerHelper optimizer, ParameterSet parameters, int step)
    {
        optimizer.zero_grad();
        using (var scope = NewDisposeScope())
        {
            var loss = parameters.Select((p, i) => p.mul(p).sum().mul(Math.Cos(step + i))).Aggregate((a, b) => a.add(b));
            loss.backward();
        }

        optimizer.step();
    }

    private static SGD.ParamGroup[] Groups(ParameterSet parameters) =>
    [
        new SGD.ParamGroup(parameters.Take(1), lr: 0.02, momentum: 0.9, weight_decay: 1e-4),
        new SGD.ParamGroup(parameters.Skip(1), lr: 0.3, momentum: 0.5, dampening: 0.1, weight_decay: 0),
    ];

    private static ParameterSet Parameters(int seed)
    {
        using var generator = new Generator((ulong)seed);
        return new ParameterSet([new Parameter(randn([4, 3], generator: generator)), new Parameter(randn([5], generator: generator))]);
    }

    private sealed class ParameterSet(List<Parameter> parameters) : List<Parameter>(parameters), IDisposable
    {
        public void Dispose() => ForEach(p => p.Dispose());
    }
}
