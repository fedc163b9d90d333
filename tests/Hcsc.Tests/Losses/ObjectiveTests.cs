using Hcsc.Core.Hierarchy;
using Hcsc.Core.Options;
using Hcsc.Losses;
using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Tests.Losses;

/// <summary>The HCSC objective against a naive double-precision transcription of docs/method.md §1 and §3–§5, using the masks it reports.</summary>
public class ObjectiveTests
{
    private const double Tau = 0.2;

    public static TheoryData<UnselectedNegativeHandling, LevelReduction, bool> Modes() => new()
    {
        { UnselectedNegativeHandling.ZeroLogit, LevelReduction.Sum, false },
        { UnselectedNegativeHandling.ZeroLogit, LevelReduction.Sum, true },
        { UnselectedNegativeHandling.Exclude, LevelReduction.Sum, false },
        { UnselectedNegativeHandling.Exclude, LevelReduction.Mean, true },
        { UnselectedNegativeHandling.ZeroLogit, LevelReduction.Mean, false },
    };

    [Theory]
    [MemberData(nameof(Modes))]
    public void Every_component_and_the_total_match_the_naive_formulas(UnselectedNegativeHandling handling, LevelReduction reduction, bool offByOne)
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float64);
        var options = new ObjectiveOptions { Temperature = Tau, UnselectedNegatives = handling, InstanceLevelReduction = reduction, ReproduceReferenceOffByOne = offByOne };
        using var objective = new HcscObjective(options);
        var r = objective.Compute(f.Query, f.Key, f.Queue, f.BatchIndices, f.Hierarchy, new Generator(5));

        // The draws must exercise both outcomes, or the masking modes would be indistinguishable.
        r.InstanceMasks.Should().AllSatisfy(m => m.dtype.Should().Be(ScalarType.Bool));
        r.InstanceMasks.Sum(m => m.numel() - m.sum().item<long>()).Should().BeGreaterThan(0);
        r.PrototypeMasks.Should().AllSatisfy(m => m.dtype.Should().Be(ScalarType.Bool));
        Enumerable.Range(0, 2).Sum(l => (r.PrototypeCandidates[l].sum().item<long>() * 4) - r.PrototypeMasks[l].sum().item<long>()).Should().BeGreaterThan(0);
        CheckAgainstNaive(f, options, r, []);
    }

    [Theory]
    [InlineData(0.02)]
    [InlineData(1.5)]
    public void Small_and_large_temperatures_match_the_naive_formulas(double tau)
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float64);
        var options = new ObjectiveOptions { Temperature = tau, UnselectedNegatives = UnselectedNegativeHandling.Exclude };
        using var objective = new HcscObjective(options);
        var r = objective.Compute(f.Query, f.Key, f.Queue, f.BatchIndices, f.Hierarchy, new Generator(5));
        CheckAgainstNaive(f, options, r, []);
        r.Total.isfinite().item<bool>().Should().BeTrue();
    }

    [Fact]
    public void Disposing_a_result_releases_every_tensor_it_holds_once()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float32);
        using var objective = new HcscObjective(ObjectiveOptions.Reference());
        var result = objective.Compute(f.Query, f.Key, f.Queue, f.BatchIndices, f.Hierarchy, new Generator(5), [f.Query]);
        var held = new[] { result.Total, result.InfoNce, result.InstanceAccuracy }
            .Concat(result.Instance).Concat(result.Prototype).Concat(result.InstanceMasks).Concat(result.PrototypeMasks)
            .Concat(result.LocalPrototypeMasks.SelectMany(m => m)).Concat(result.PrototypeCandidates).ToList();
        held.Should().HaveCountGreaterThan(10).And.OnlyContain(t => !t.IsInvalid);

        result.Dispose();
        held.Should().OnlyContain(t => t.IsInvalid, "every tensor of the result is released");
        result.Dispose(); // twice is harmless
        f.Query.IsInvalid.Should().BeFalse("the inputs are the caller's");
    }

    [Fact]
    public void Large_logits_from_unnormalised_queries_stay_exact()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float32);
        var query = f.Query.mul(40);   // logits up to 200 / τ = 1000: exp would overflow without the shift
        using var objective = new HcscObjective(ObjectiveOptions.Reference());
        var r = objective.Compute(query, f.Key, f.Queue, f.BatchIndices, f.Hierarchy, new Generator(5));
        var (q, k, z) = (LossFixture.Rows(query), LossFixture.Rows(f.Key), LossFixture.Rows(f.Queue));
        float tolerance = (float)FloatBounds.Sum(3 + 7 + 1, 1000, FloatBounds.Float32); // d + Q + 1 terms, logits ≤ 1000
        r.InfoNce.item<float>().Should().BeApproximately((float)NaiveHcsc.Icsc(q, k, z, null, 0.2, UnselectedNegativeHandling.ZeroLogit), tolerance);
        for (int l = 0; l < 3; l++)
        {
            double expected = NaiveHcsc.Icsc(q, k, z, LossFixture.Rows(r.InstanceMasks[l]), 0.2, UnselectedNegativeHandling.ZeroLogit);
            r.Instance[l].item<float>().Should().BeApproximately((float)expected, tolerance);
        }

        r.Total.isfinite().item<bool>().Should().BeTrue();
    }

    [Fact]
    public void Local_views_use_the_global_masks_and_add_their_own_terms()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float64);
        var local = new[] { nn.functional.normalize(randn(4, 3, dtype: ScalarType.Float64, generator: new Generator(8)), dim: 1), nn.functional.normalize(randn(4, 3, dtype: ScalarType.Float64, generator: new Generator(9)), dim: 1) };
        foreach (bool onLocal in new[] { true, false })
        {
            var options = new ObjectiveOptions { Temperature = Tau, SelectionOnLocalViews = onLocal };
            using var objective = new HcscObjective(options);
            var r = objective.Compute(f.Query, f.Key, f.Queue, f.BatchIndices, f.Hierarchy, new Generator(5), local);
            r.LocalInstance.Should().HaveCount(2);
            r.LocalInstance[0].Should().HaveCount(onLocal ? 3 : 0);
            r.LocalPrototype[1].Should().HaveCount(3);
            r.LocalPrototypeMasks[1].Should().HaveCount(3);
            CheckAgainstNaive(f, options, r, local);
        }
    }

    [Fact]
    public void Every_view_draws_its_own_prototype_mask_in_the_documented_order()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float64, batch: 2);
        var local = nn.functional.normalize(randn(2, 3, dtype: ScalarType.Float64, generator: new Generator(8)), dim: 1);
        using var objective = new HcscObjective(new ObjectiveOptions { Temperature = Tau });
        var level = f.Hierarchy.Levels[0];
        var labels = level.Assignments.index_select(0, f.BatchIndices);
        var accept = PrototypeSelector.AcceptanceProbabilities(labels, level, f.Hierarchy.Levels[1], Tau);
        var candidates = PrototypeSelector.Candidates(labels, level, false);
        int differing = 0;
        for (ulong seed = 31; seed < 51; seed++)
        {
            var r = objective.Compute(f.Query, f.Key, f.Queue, f.BatchIndices, f.Hierarchy, new Generator(seed), [local]);

            // The ICSC masks of all levels (one draw on the CPU, as SampleMask's), then level 0's global PCSC mask, then the local view's.
            var g = new Generator(seed);
            _ = InstanceSelector.SampleMask(full(2, 7, 0.5, dtype: ScalarType.Float64), g);
            var global = PrototypeSelector.SampleMask(accept, candidates, g);
            var own = PrototypeSelector.SampleMask(accept, candidates, g);
            r.PrototypeMasks[0].eq(global.to(ScalarType.Bool)).all().item<bool>().Should().BeTrue();
            r.LocalPrototypeMasks[0][0].eq(own.to(ScalarType.Bool)).all().item<bool>().Should().BeTrue();
            differing += global.ne(own).any().item<bool>() ? 1 : 0;
        }

        differing.Should().BeGreaterThan(0, "some draws must differ between the views, or the order would not be tested");
    }

    [Fact]
    public void With_both_selections_off_the_total_is_InfoNce_plus_the_mean_unselected_pcsc()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float64);
        var options = new ObjectiveOptions { Temperature = Tau, InstanceSelection = false, PrototypeSelection = false };
        using var objective = new HcscObjective(options);
        var r = objective.Compute(f.Query, f.Key, f.Queue, f.BatchIndices, f.Hierarchy, new Generator(5));
        r.Instance.Should().BeEmpty();
        r.InstanceMasks.Should().BeEmpty();
        r.AcceptanceRatio.Select(a => a.item<double>()).Should().AllBeEquivalentTo(1.0);
        for (int l = 0; l < 3; l++)
        {
            r.PrototypeMasks[l].eq(r.PrototypeCandidates[l].unsqueeze(0)).all().item<bool>().Should().BeTrue();
        }

        CheckAgainstNaive(f, options, r, []);
    }

    [Fact]
    public void Warm_up_without_a_hierarchy_is_plain_InfoNce_of_every_view()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float64);
        var local = nn.functional.normalize(randn(4, 3, dtype: ScalarType.Float64, generator: new Generator(8)), dim: 1);
        using var objective = new HcscObjective(new ObjectiveOptions { Temperature = Tau });
        var r = objective.Compute(f.Query, f.Key, f.Queue, f.BatchIndices, null, new Generator(5), [local]);
        var (q, k, z) = (LossFixture.Rows(f.Query), LossFixture.Rows(f.Key), LossFixture.Rows(f.Queue));
        double global = NaiveHcsc.Icsc(q, k, z, null, Tau, UnselectedNegativeHandling.ZeroLogit);
        double localNce = NaiveHcsc.Icsc(LossFixture.Rows(local), k, z, null, Tau, UnselectedNegativeHandling.ZeroLogit);
        r.InfoNce.item<double>().Should().BeApproximately(global, 1e-10);
        r.Total.item<double>().Should().BeApproximately(global + localNce, 1e-10);
        r.Instance.Should().BeEmpty();
        r.Prototype.Should().BeEmpty();
    }

    [Fact]
    public void The_fused_instance_masks_are_the_canonical_sampler_and_the_top_level_uses_every_candidate()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float64, batch: 6, queueLength: 40);
        using var objective = new HcscObjective(new ObjectiveOptions { Temperature = Tau });
        var r = objective.Compute(f.Query, f.Key, f.Queue, f.BatchIndices, f.Hierarchy, new Generator(77));

        // Same generator state → the first draw of the objective is the level-0 instance mask.
        var level = f.Hierarchy.Levels[0];
        var labels = level.Assignments.index_select(0, f.BatchIndices);
        var canonical = InstanceSelector.SampleMask(InstanceSelector.AcceptanceProbabilities(f.Queue, labels, level), new Generator(77));
        r.InstanceMasks[0].eq(canonical.to(ScalarType.Bool)).all().item<bool>().Should().BeTrue();

        var top = r.PrototypeMasks[2];
        top.eq(r.PrototypeCandidates[2].unsqueeze(0)).all().item<bool>().Should().BeTrue();
        r.AcceptanceRatio[0].item<double>().Should().BeApproximately(r.InstanceMasks[0].to(ScalarType.Float64).mean().item<double>(), 1e-12);
    }

    [Theory]
    [InlineData(QueueSelectionCacheMode.Thresholds)]
    [InlineData(QueueSelectionCacheMode.Normalisers)]
    public void Cached_and_direct_paths_agree_and_masks_are_deterministic(QueueSelectionCacheMode mode)
    {
        using var scope = NewDisposeScope();
        // float64: the test is about the two paths computing one formula, so the comparison is at float64's bound.
        using var f = new LossFixture(ScalarType.Float64, batch: 6, queueLength: 64, dim: 8);
        double tolerance = FloatBounds.Sum(8 + 64 + 5 + 1, 1 / 5e-4, FloatBounds.Float64); // d + Q + k_0 + 1 terms, logits ≤ 1/φ_min
        using var cache = new QueueSelectionCache(mode);
        cache.Refresh(f.Hierarchy, f.Queue);
        using var objective = new HcscObjective(ObjectiveOptions.Reference());
        var direct = objective.Compute(f.Query, f.Key, f.Queue, f.BatchIndices, f.Hierarchy, new Generator(21));
        var cached = objective.Compute(f.Query, f.Key, f.Queue, f.BatchIndices, f.Hierarchy, new Generator(21), cache: cache);
        var again = objective.Compute(f.Query, f.Key, f.Queue, f.BatchIndices, f.Hierarchy, new Generator(21), cache: cache);
        cached.Total.item<double>().Should().BeApproximately(direct.Total.item<double>(), 8 * tolerance); // 8 ≥ the terms summed
        for (int l = 0; l < 3; l++)
        {
            cached.InstanceMasks[l].eq(direct.InstanceMasks[l]).all().item<bool>().Should().BeTrue();
            cached.PrototypeMasks[l].eq(direct.PrototypeMasks[l]).all().item<bool>().Should().BeTrue();
            again.InstanceMasks[l].eq(cached.InstanceMasks[l]).all().item<bool>().Should().BeTrue();
            cached.Instance[l].item<double>().Should().BeApproximately(direct.Instance[l].item<double>(), tolerance);
            cached.Prototype[l].item<double>().Should().BeApproximately(direct.Prototype[l].item<double>(), tolerance);
        }

        again.Total.item<double>().Should().Be(cached.Total.item<double>());
    }

    [Theory]
    [InlineData(ScalarType.Float64, UnselectedNegativeHandling.ZeroLogit)]
    [InlineData(ScalarType.Float64, UnselectedNegativeHandling.Exclude)]
    [InlineData(ScalarType.Float32, UnselectedNegativeHandling.ZeroLogit)]
    [InlineData(ScalarType.Float32, UnselectedNegativeHandling.Exclude)]
    public void Host_kernels_and_tensor_operations_give_the_same_terms_and_gradients_without_selection(ScalarType dtype, UnselectedNegativeHandling handling)
    {
        // Without selection no mask is drawn, so both paths see the same negatives and must agree term for term.
        var problem = new KernelPathProblem(dtype);
        double tolerance = 8 * problem.TermTolerance; // the total adds at most 8 terms
        var results = new[] { KernelPath.Host, KernelPath.Tensor }
            .Select(path => problem.Run(new ObjectiveOptions { Temperature = Tau, UnselectedNegatives = handling, InstanceSelection = false, PrototypeSelection = false, Kernels = path }))
            .ToArray();

        var (a, b) = (results[0], results[1]);
        a.Result.Prototype.Should().AllSatisfy(t => t.to(ScalarType.Float64).item<double>().Should().BeGreaterThan(0));
        a.Result.Total.to(ScalarType.Float64).item<double>().Should().BeApproximately(b.Result.Total.to(ScalarType.Float64).item<double>(), tolerance);
        a.Result.Instance.Should().BeEmpty("without instance selection the instance term is InfoNCE");
        a.Result.InfoNce.to(ScalarType.Float64).item<double>().Should().BeApproximately(b.Result.InfoNce.to(ScalarType.Float64).item<double>(), problem.TermTolerance);
        a.Result.Prototype.Should().HaveCount(3).And.HaveSameCount(b.Result.Prototype);
        for (int l = 0; l < 3; l++)
        {
            a.Result.Prototype[l].to(ScalarType.Float64).item<double>().Should().BeApproximately(b.Result.Prototype[l].to(ScalarType.Float64).item<double>(), tolerance);
            a.Result.LocalPrototype[0][l].to(ScalarType.Float64).item<double>().Should().BeApproximately(b.Result.LocalPrototype[0][l].to(ScalarType.Float64).item<double>(), tolerance);
            a.Result.PrototypeAccuracy[l].to(ScalarType.Float64).item<double>().Should().Be(b.Result.PrototypeAccuracy[l].to(ScalarType.Float64).item<double>());
        }

        a.QueryGrad.sub(b.QueryGrad).abs().max().to(ScalarType.Float64).item<double>().Should().BeLessThan(tolerance);
        a.LocalGrad.sub(b.LocalGrad).abs().max().to(ScalarType.Float64).item<double>().Should().BeLessThan(tolerance);
    }

    [Theory]
    [InlineData(ScalarType.Float64, UnselectedNegativeHandling.ZeroLogit, KernelPath.Host)]
    [InlineData(ScalarType.Float64, UnselectedNegativeHandling.Exclude, KernelPath.Tensor)]
    [InlineData(ScalarType.Float32, UnselectedNegativeHandling.ZeroLogit, KernelPath.Tensor)]
    [InlineData(ScalarType.Float32, UnselectedNegativeHandling.Exclude, KernelPath.Host)]
    [InlineData(ScalarType.Float64, UnselectedNegativeHandling.ZeroLogit, KernelPath.Tensor)]
    public void With_selection_each_path_computes_its_terms_from_its_own_masks(ScalarType dtype, UnselectedNegativeHandling handling, KernelPath path)
    {
        // The two paths draw their masks from different streams (the host kernel's lanes, or torch's rand as on CUDA),
        // so each run's terms are checked against the public losses' tensor formulas given that run's own masks.
        var problem = new KernelPathProblem(dtype);
        var run = problem.Run(new ObjectiveOptions { Temperature = Tau, UnselectedNegatives = handling, Kernels = path });
        var r = run.Result;
        var kept = r.PrototypeMasks[0].sum().to(ScalarType.Float64).item<double>();
        kept.Should().BeInRange(1, (r.PrototypeCandidates[0].sum().item<long>() * 8) - 1, "the level-0 selection must keep some candidates and drop others");
        r.Total.to(ScalarType.Float64).isfinite().item<bool>().Should().BeTrue();
        for (int l = 0; l < 3; l++)
        {
            var level = problem.Hierarchy.Levels[l];
            var labels = level.Assignments.index_select(0, problem.BatchIndices);
            double instance = IcscLoss.Compute(problem.Query, problem.Key, problem.Queue, r.InstanceMasks[l], Tau, handling).to(ScalarType.Float64).item<double>();
            double prototype = PcscLoss.Compute(problem.Query, labels, level, r.PrototypeMasks[l], r.PrototypeCandidates[l], handling).to(ScalarType.Float64).item<double>();
            r.Instance[l].to(ScalarType.Float64).item<double>().Should().BeApproximately(instance, problem.TermTolerance, $"level {l} ICSC");
            r.Prototype[l].to(ScalarType.Float64).item<double>().Should().BeApproximately(prototype, problem.TermTolerance, $"level {l} PCSC");
        }
    }

    /// <summary>
    /// 37 → 19 → 5 prototypes, 8 queries, a queue of 29, d = 6: full SIMD lanes and tails in every kernel, real
    /// candidate sets at every level, and one concentration of 5e-4 (logits near ±2000); one local view.
    /// </summary>
    private sealed class KernelPathProblem
    {
        private readonly Tensor _local;

        public KernelPathProblem(ScalarType dtype)
        {
            var g = new Generator(17);
            Tensor Unit(long rows) => nn.functional.normalize(randn(new long[] { rows, 6 }, dtype: dtype, generator: g), dim: 1);
            long[] counts = [37, 19, 5];
            var parents = new[] { randint(19, new long[] { 37 }, generator: g), randint(5, new long[] { 19 }, generator: g) };
            var fine = randint(37, new long[] { 50 }, generator: g);
            var assignments = new[] { fine, parents[0].index_select(0, fine), parents[1].index_select(0, parents[0].index_select(0, fine)) };
            var concentrations = counts.Select(k => rand(new long[] { k }, dtype: dtype, generator: g).mul(0.2).add(0.1)).ToArray();
            concentrations[0][3] = tensor(5e-4, dtype: dtype);
            Hierarchy = ClusterHierarchy.FromTensors(counts.Select(Unit).ToArray(), assignments, concentrations, parents);
            (Query, Key, Queue, BatchIndices) = (Unit(8), Unit(8), Unit(29), randint(50, new long[] { 8 }, generator: g));
            _local = Unit(8);

            // One term: a log-sum-exp over d + Q + k_0 + 1 products and logits, logits ≤ 1/5e-4 = 2000 in size.
            TermTolerance = FloatBounds.Sum(6 + 29 + 37 + 1, 1 / 5e-4, LossFixture.UnitRoundoff(dtype));
        }

        public ClusterHierarchy Hierarchy { get; }

        public Tensor Query { get; }

        public Tensor Key { get; }

        public Tensor Queue { get; }

        public Tensor BatchIndices { get; }

        public double TermTolerance { get; }

        public (HcscLossResult Result, Tensor QueryGrad, Tensor LocalGrad) Run(ObjectiveOptions options)
        {
            using var objective = new HcscObjective(options);
            var query = Query.clone().requires_grad_(true);
            var view = _local.clone().requires_grad_(true);
            var r = objective.Compute(query, Key, Queue, BatchIndices, Hierarchy, new Generator(13), [view]);
            r.Total.backward();
            return (r, query.grad!, view.grad!);
        }
    }

    [Fact]
    public void Changing_the_reported_masks_before_backward_changes_nothing()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float32, batch: 6, queueLength: 29, dim: 5);
        using var objective = new HcscObjective(ObjectiveOptions.Reference());
        var gradients = new List<Tensor>();
        foreach (bool tamper in new[] { false, true })
        {
            var query = f.Query.clone().requires_grad_(true);
            var r = objective.Compute(query, f.Key, f.Queue, f.BatchIndices, f.Hierarchy, new Generator(3));
            if (tamper)
            {
                foreach (var mask in r.InstanceMasks.Concat(r.PrototypeMasks))
                {
                    mask.logical_not_();
                }
            }

            r.Total.backward();
            gradients.Add(query.grad!);
        }

        gradients[1].eq(gradients[0]).all().item<bool>().Should().BeTrue();
    }

    [Fact]
    public void Gradients_flow_into_the_queries_only_and_match_finite_differences()
    {
        using var scope = NewDisposeScope();
        using var f = new LossFixture(ScalarType.Float64);
        var query = f.Query.clone().requires_grad_(true);
        var local = nn.functional.normalize(randn(4, 3, dtype: ScalarType.Float64, generator: new Generator(8)), dim: 1).requires_grad_(true);
        var key = f.Key.clone().requires_grad_(true);
        var queue = f.Queue.clone().requires_grad_(true);
        foreach (var options in new[] { ObjectiveOptions.Reference(), ObjectiveOptions.Paper() })
        {
            options.Temperature = Tau;
            using var objective = new HcscObjective(options);
            double Loss(Tensor q, Tensor v)
            {
                using var inner = NewDisposeScope();
                using var noGrad = no_grad();
                return objective.Compute(q, key, queue, f.BatchIndices, f.Hierarchy, new Generator(3), [v]).Total.item<double>();
            }

            query.grad?.zero_();
            local.grad?.zero_();
            objective.Compute(query, key, queue, f.BatchIndices, f.Hierarchy, new Generator(3), [local]).Total.backward();
            key.grad.Should().BeNull();
            queue.grad.Should().BeNull();
            foreach (var (param, isQuery) in new[] { (query, true), (local, false) })
            {
                var analytic = LossFixture.Values(param.grad!);
                var flat = param.detach().clone().reshape(-1);
                for (int i = 0; i < flat.shape[0]; i++)
                {
                    const double eps = 1e-6;
                    var plus = flat.clone();
                    plus[i] = plus[i] + eps;
                    var minus = flat.clone();
                    minus[i] = minus[i] - eps;
                    double fp = isQuery ? Loss(plus.reshape(4, 3), local.detach()) : Loss(query.detach(), plus.reshape(4, 3));
                    double fm = isQuery ? Loss(minus.reshape(4, 3), local.detach()) : Loss(query.detach(), minus.reshape(4, 3));
                    analytic[i].Should().BeApproximately((fp - fm) / (2 * eps), 1e-6);
                }
            }
        }
    }

    private static void CheckAgainstNaive(LossFixture f, ObjectiveOptions o, HcscLossResult r, Tensor[] locals)
    {
        var k = LossFixture.Rows(f.Key);
        var z = LossFixture.Rows(f.Queue);
        var views = new[] { LossFixture.Rows(f.Query) }.Concat(locals.Select(LossFixture.Rows)).ToArray();
        var idx = f.Indices;
        var h = o.UnselectedNegatives;
        double total = 0;
        for (int v = 0; v < views.Length; v++)
        {
            var instance = new List<double>();
            var prototype = new List<double>();
            for (int l = 0; l < 3; l++)
            {
                var labels = idx.Select(i => f.Assignments[l][i]).ToArray();
                var candidates = NaiveHcsc.Candidates(labels, f.Prototypes[l].Length, f.Assignments[l], o.ReproduceReferenceOffByOne);
                LossFixture.Values(r.PrototypeCandidates[l]).Select(c => c > 0.5).Should().Equal(candidates);
                var protoMask = LossFixture.Rows(v == 0 ? r.PrototypeMasks[l] : r.LocalPrototypeMasks[v - 1][l]);
                protoMask.Should().OnlyContain(row => row.Select((m, c) => m <= 0.5 || candidates[c]).All(ok => ok));
                if (o.InstanceSelection)
                {
                    var mask = LossFixture.Rows(r.InstanceMasks[l]);
                    instance.Add(NaiveHcsc.Icsc(views[v], k, z, mask, o.Temperature, h));
                }

                prototype.Add(NaiveHcsc.Pcsc(views[v], labels, f.Prototypes[l], f.Concentrations[l], candidates, protoMask, h));
            }

            bool selected = o.InstanceSelection && (v == 0 || o.SelectionOnLocalViews);
            double infoNce = NaiveHcsc.Icsc(views[v], k, z, null, o.Temperature, h);
            double instancePart = !selected ? infoNce : o.InstanceLevelReduction == LevelReduction.Sum ? instance.Sum() : instance.Average();
            total += instancePart + prototype.Average();
            var reportedInstance = v == 0 ? r.Instance : r.LocalInstance[v - 1];
            var reportedPrototype = v == 0 ? r.Prototype : r.LocalPrototype[v - 1];
            (v == 0 ? r.InfoNce : r.LocalInfoNce[v - 1]).item<double>().Should().BeApproximately(infoNce, 1e-10);
            if (selected)
            {
                reportedInstance.Select(t => t.item<double>()).Should().Equal(instance, (a, b) => Math.Abs(a - b) < 1e-10);
            }

            reportedPrototype.Select(t => t.item<double>()).Should().Equal(prototype, (a, b) => Math.Abs(a - b) < 1e-10);
        }

        r.Total.item<double>().Should().BeApproximately(total, 1e-10);
    }
}
