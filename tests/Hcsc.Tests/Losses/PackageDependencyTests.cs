using System.Xml.Linq;
using Hcsc.Losses;

namespace Hcsc.Tests.Losses;

/// <summary>Hcsc.Losses stands on Hcsc.Core and TorchSharp alone (a user gets no clustering or models with it).</summary>
public class PackageDependencyTests
{
    [Fact]
    public void The_assembly_references_no_other_Hcsc_package_than_Core()
    {
        var hcsc = typeof(HcscObjective).Assembly.GetReferencedAssemblies().Select(a => a.Name!).Where(n => n.StartsWith("Hcsc", StringComparison.Ordinal));
        hcsc.Should().BeEquivalentTo(["Hcsc.Core"]);
    }

    [Fact]
    public void The_project_references_only_Core_and_no_packages_of_its_own()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Hcsc.sln")))
        {
            dir = dir.Parent;
        }

        dir.Should().NotBeNull("the tests run from inside the repository");
        var project = XDocument.Load(Path.Combine(dir!.FullName, "src", "Hcsc.Losses", "Hcsc.Losses.csproj"));
        project.Descendants("ProjectReference").Select(e => e.Attribute("Include")!.Value.Replace('\\', '/'))
            .Should().Equal("../Hcsc.Core/Hcsc.Core.csproj");
        project.Descendants("PackageReference").Should().BeEmpty("TorchSharp comes through Hcsc.Core");
    }
}
