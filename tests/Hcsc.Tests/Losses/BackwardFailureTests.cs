using Hcsc.Core.Options;
using Hcsc.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Tests.Losses;

/// <summary>Runs alone: the failure hook and the pending failures are process-wide.</summary>
[CollectionDefinition(nameof(BackwardFailureTests), DisableParallelization = true)]
public sealed class BackwardFailureCollection;

[Collection(nameof(BackwardFailureTests))]
public class BackwardFailureTests
{
    [Theory]
    [InlineData("QueueCrossEntropy")]
    [InlineData("PrototypeContrast")]
    public void An_exception_in_a_custom_backward_pass_surfaces_as_a_dotnet_exception_and_the_process_lives(string kernel)
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float32);
        var query = f.Query.clone().requires_grad_(true);
        using var objective = new HcscObjective(new ObjectiveOptions());
        var result = objective.Compute(query, f.Key, f.Queue, f.BatchIndices, f.Hierarchy, new Generator(5));

        BackwardFailures.FaultForTesting = name =>
        {
            if (name == kernel)
            {
                throw new InvalidOperationException("simulated fault in the kernel");
            }
        };
        Action act;
        try
        {
            act = result.Backward;
            act.Should().Throw<BackwardPassException>()
                .WithMessage($"The backward pass of {kernel} failed (InvalidOperationException: simulated fault in the kernel). Its gradients are NaN*")
                .Which.Kernels.Should().Equal(kernel);
        }
        finally
        {
            BackwardFailures.FaultForTesting = null;
        }

        query.grad.Should().NotBeNull();
        query.grad!.isnan().any().item<bool>().Should().BeTrue("the failed kernel's gradient is NaN, so no optimiser step can take it unnoticed");

        // Nothing is left pending: the next step's backward succeeds and reports nothing.
        var again = objective.Compute(query, f.Key, f.Queue, f.BatchIndices, f.Hierarchy, new Generator(5));
        query.grad!.zero_();
        act = again.Backward;
        act.Should().NotThrow();
        query.grad!.isfinite().all().item<bool>().Should().BeTrue();
    }

    [Fact]
    public void A_plain_backward_call_leaves_the_failure_for_ThrowIfAny()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float64);
        var query = f.Query.clone().requires_grad_(true);
        using var objective = new HcscObjective(new ObjectiveOptions());
        var result = objective.Compute(query, f.Key, f.Queue, f.BatchIndices, f.Hierarchy, new Generator(5));
        BackwardFailures.FaultForTesting = _ => throw new ArgumentException("bad layout");
        try
        {
            result.Total.backward();
        }
        finally
        {
            BackwardFailures.FaultForTesting = null;
        }

        var act = BackwardFailures.ThrowIfAny;
        act.Should().Throw<BackwardPassException>().Which.Kernels.Should().Contain(["QueueCrossEntropy", "PrototypeContrast"]);
        act.Should().NotThrow("a failure is reported once");
    }
}
