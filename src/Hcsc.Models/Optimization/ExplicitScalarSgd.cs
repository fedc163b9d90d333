using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Hcsc.Models.Optimization;

/// <summary>
/// Stochastic gradient descent exactly as <c>torch.optim.SGD</c> (and TorchSharp's <see cref="SGD"/>), with every
/// <see cref="Scalar"/> made explicitly and kept alive for the native call. TorchSharp's own <c>SGD.step</c> converts
/// weight decay, momentum, <c>1 − dampening</c> and <c>±lr</c> implicitly for every parameter of every step; such a
/// temporary can be finalised while libtorch still reads it (dotnet/TorchSharp PR #1496), a rare crash in long runs.
/// </summary>
/// <remarks>
/// For a parameter p with gradient g, per step (PyTorch's formulation, dampening τ, weight decay λ, momentum μ):
/// <code>
/// d = g + λ·p
/// b = d                       (first step)
/// b = μ·b + (1 − τ)·d         (later steps)
/// d = nesterov ? d + μ·b : b  (when μ ≠ 0)
/// p = p − lr·d                (p + lr·d when maximising)
/// </code>
/// The state (momentum buffers) and the options are TorchSharp's <see cref="SGD"/>'s, so <c>save_state_dict</c>
/// files are interchangeable with it: checkpoints written with <see cref="SGD"/> load into this optimiser and back.
/// Built over <see cref="FlatParameters"/>, the same update runs on the flat buffers, a handful of kernels a step
/// instead of several per parameter, with the same results bit for bit; the momentum buffers are then views of one
/// flat buffer and are saved and loaded as before.
/// </remarks>
public sealed class ExplicitScalarSgd : SGD
{
    private readonly FlatParameters? _flat;
    private Tensor? _flatMomentum;
    private Tensor[] _momentumViews = [];

    /// <summary>One parameter group.</summary>
    /// <param name="parameters">The parameters to optimise.</param>
    /// <param name="learningRate">lr ≥ 0.</param>
    /// <param name="momentum">μ ≥ 0 (0: plain SGD).</param>
    /// <param name="dampening">τ.</param>
    /// <param name="weightDecay">λ ≥ 0 (L2 penalty added to the gradient).</param>
    /// <param name="nesterov">Nesterov momentum (needs μ &gt; 0 and τ = 0).</param>
    public ExplicitScalarSgd(IEnumerable<Parameter> parameters, double learningRate, double momentum = 0, double dampening = 0, double weightDecay = 0, bool nesterov = false)
        : base(parameters, learningRate, momentum, dampening, weightDecay, nesterov)
    {
    }

    /// <summary>
    /// One group over packed parameters: <c>zero_grad</c> zeroes <see cref="FlatParameters.Gradients"/> in one kernel
    /// and <c>step</c> updates <see cref="FlatParameters.Values"/> in a few (the formula above on the flat buffers).
    /// </summary>
    /// <param name="parameters">Parameters packed with their gradients (<see cref="FlatParameters.Pack"/> with packGradients).</param>
    /// <param name="learningRate">lr ≥ 0.</param>
    /// <param name="momentum">μ ≥ 0 (0: plain SGD); no dampening, no Nesterov.</param>
    /// <param name="weightDecay">λ ≥ 0 (L2 penalty added to the gradient).</param>
    /// <exception cref="ArgumentException">The gradients were not packed.</exception>
    public ExplicitScalarSgd(FlatParameters parameters, double learningRate, double momentum, double weightDecay)
        : base((parameters ?? throw new ArgumentNullException(nameof(parameters))).Parameters, learningRate, momentum, dampening: 0, weightDecay, nesterov: false)
    {
        if (parameters.Gradients is null)
        {
            throw new ArgumentException("The optimiser needs the gradients packed too (FlatParameters.Pack with packGradients: true).", nameof(parameters));
        }

        _flat = parameters;
    }

    /// <summary>Several parameter groups, each with its own options (those it leaves unset take the defaults given here).</summary>
    /// <param name="groups">The groups, e.g. a backbone and a classifier with their own learning rates.</param>
    /// <param name="learningRate">Default lr ≥ 0.</param>
    /// <param name="momentum">Default μ ≥ 0.</param>
    /// <param name="weightDecay">Default λ ≥ 0.</param>
    public ExplicitScalarSgd(IEnumerable<ParamGroup> groups, double learningRate, double momentum, double weightDecay)
        : base(groups, learningRate, momentum, dampening: 0, weightDecay, nesterov: false)
    {
    }

    /// <inheritdoc />
    public override Tensor step(Func<Tensor>? closure = null) => _flat is null ? _step<ParamGroup>(UpdateGroup, closure) : _step<ParamGroup>(UpdateFlat, closure);

    /// <inheritdoc />
    public override void zero_grad()
    {
        if (_flat is null)
        {
            base.zero_grad();
        }
        else
        {
            _flat.ZeroGradients();
        }
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing); // disposes the states' buffers, the views among them
        if (disposing)
        {
            _momentumViews = [];
            DropFlatMomentum();
        }
    }

    // The per-parameter formula on the flat buffers: elementwise, so every element meets the same operations.
    private void UpdateFlat(ParamGroup group)
    {
        var options = group.Options;
        double momentum = options.momentum!.Value;
        double weightDecay = options.weight_decay!.Value;
        using var decay = weightDecay.ToScalar();
        using var momentumScalar = momentum.ToScalar();
        using var keep = (1 - options.dampening!.Value).ToScalar();
        using var stepSize = (options.maximize!.Value ? options.LearningRate!.Value : -options.LearningRate!.Value).ToScalar();
        var (values, gradients) = (_flat!.Values, _flat.Gradients!);

        using var scope = NewDisposeScope();
        var direction = weightDecay != 0 ? gradients.add(values, decay) : gradients;
        if (momentum != 0)
        {
            if (FlatMomentumIsCurrent())
            {
                _flatMomentum!.mul_(momentumScalar).add_(direction, keep);
            }
            else
            {
                PackMomentum(direction, momentumScalar, keep);
            }

            direction = options.nesterov!.Value ? direction.add(_flatMomentum!, momentumScalar) : _flatMomentum!;
        }

        values.add_(direction, stepSize);
    }

    // The states must still hold the views of the flat momentum: loading a state dict into an optimiser that has not
    // stepped yet gives them tensors of their own.
    private bool FlatMomentumIsCurrent()
    {
        if (_flatMomentum is null)
        {
            return false;
        }

        for (int i = 0; i < _momentumViews.Length; i++) // a loop, not LINQ: nothing allocated per step
        {
            if (!ReferenceEquals(((State)_state[_flat!.Parameters[i].Handle]).momentum_buffer, _momentumViews[i]))
            {
                return false;
            }
        }

        return true;
    }

    // The flat momentum b, with its views handed to the states (which save and load them). The first step sets b = d,
    // as the per-parameter loop's clone; after a load the loaded buffers are gathered and take μ·b + (1 − τ)·d.
    private void PackMomentum(Tensor direction, Scalar momentum, Scalar keep)
    {
        var states = _flat!.Parameters.Select(p => (State)_state[p.Handle]).ToArray();
        var flat = direction.clone().detach().DetachFromDisposeScope();
        long offset = 0;
        var views = new Tensor[states.Length];
        for (int i = 0; i < states.Length; i++)
        {
            long n = _flat.Parameters[i].numel();
            views[i] = flat.narrow(0, offset, n).view(_flat.Parameters[i].shape).DetachFromDisposeScope();
            if (states[i].momentum_buffer is { } loaded && !ReferenceEquals(loaded, _momentumViews.ElementAtOrDefault(i)))
            {
                views[i].copy_(loaded).mul_(momentum).add_(direction.narrow(0, offset, n).view(_flat.Parameters[i].shape), keep);
            }

            states[i].momentum_buffer = views[i];
            offset += n;
        }

        DropFlatMomentum();
        _flatMomentum = flat;
        _momentumViews = views;
    }

    private void DropFlatMomentum()
    {
        foreach (var view in _momentumViews)
        {
            view.Dispose();
        }

        _momentumViews = [];
        _flatMomentum?.Dispose();
        _flatMomentum = null;
    }

    private void UpdateGroup(ParamGroup group)
    {
        var options = group.Options;
        double momentum = options.momentum!.Value;
        double weightDecay = options.weight_decay!.Value;
        bool nesterov = options.nesterov!.Value;
        double lr = options.LearningRate!.Value;
        using var decay = weightDecay.ToScalar();
        using var momentumScalar = momentum.ToScalar();
        using var keep = (1 - options.dampening!.Value).ToScalar();
        using var stepSize = (options.maximize!.Value ? lr : -lr).ToScalar();

        foreach (var parameter in group.Parameters)
        {
            var gradient = parameter.grad;
            if (gradient is null)
            {
                continue;
            }

            var direction = weightDecay != 0 ? gradient.add(parameter, decay) : gradient;
            if (momentum != 0)
            {
                var state = (State)_state[parameter.Handle];
                if (state.momentum_buffer is null)
                {
                    state.momentum_buffer = direction.clone().detach().DetachFromDisposeScope();
                }
                else
                {
                    state.momentum_buffer.mul_(momentumScalar).add_(direction, keep);
                }

                direction = nesterov ? direction.add(state.momentum_buffer, momentumScalar) : state.momentum_buffer;
            }

            parameter.add_(direction, stepSize);
        }
    }
}
