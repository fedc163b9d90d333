using Hcsc.Models.Optimization;
using Hcsc.Samples.ImageNetPretrain.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Tests.Sample;

public class NonFiniteGuardTests
{
    private static (nn.Module<Tensor, Tensor> Model, NonFiniteGuard Guard) Model(bool packed = false)
    {
        var model = nn.Sequential(("first", nn.Linear(3, 4)), ("second", nn.Linear(4, 1)));
        var flat = packed ? FlatParameters.Pack(model.named_parameters(), packGradients: true) : null;
        return (model, new NonFiniteGuard(model.named_parameters(), "Lower --lr.", flat));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_finite_step_returns_its_loss(bool packed)
    {
        using var scope = NewDisposeScope();
        var (model, guard) = Model(packed);
        var loss = model.call(ones(2, 3)).sum();
        loss.backward();
        guard.Check(loss, epoch: 1, step: 1).Should().BeApproximately(loss.item<float>(), 1e-6);
    }

    [Fact]
    public void A_nan_loss_names_the_epoch_and_step()
    {
        using var scope = NewDisposeScope();
        var (model, guard) = Model();
        var loss = model.call(full(2, 3, double.NaN)).sum();
        loss.backward();
        var act = () => guard.Check(loss, epoch: 4, step: 17);
        act.Should().Throw<TrainingDivergedException>().WithMessage("The loss became NaN in epoch 4, step 17; the weights were not updated. Lower --lr.")
            .Which.Step.Should().Be(17);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void An_infinite_gradient_with_a_finite_loss_names_the_first_parameter_affected(bool packed)
    {
        using var scope = NewDisposeScope();
        var (model, guard) = Model(packed);
        var loss = model.call(ones(2, 3)).sum();
        loss.backward();
        using (no_grad())
        {
            model.named_parameters().Single(p => p.name == "second.weight").parameter.grad![0, 1] = float.PositiveInfinity;
            model.named_parameters().Single(p => p.name == "second.bias").parameter.grad![0] = float.NaN;
        }

        var act = () => guard.Check(loss, epoch: 2, step: 3);
        act.Should().Throw<TrainingDivergedException>().WithMessage("The gradient of second.weight became non-finite in epoch 2, step 3*");
    }

    [Fact]
    public void Non_finite_weights_are_named_before_a_checkpoint()
    {
        using var scope = NewDisposeScope();
        var (model, guard) = Model();
        guard.CheckWeights(epoch: 1);
        using (no_grad())
        {
            model.named_parameters().Single(p => p.name == "first.bias").parameter[2] = float.NaN;
        }

        var act = () => guard.CheckWeights(epoch: 5);
        act.Should().Throw<TrainingDivergedException>().WithMessage("The weights of first.bias became non-finite in epoch 5; this epoch is not checkpointed. Lower --lr.");
    }
}
