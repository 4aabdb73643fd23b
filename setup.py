import os.path as osp
import re

from setuptools import find_packages, setup

here = osp.dirname(osp.abspath(__file__))
with open(osp.join(here, 'torch_geometric_coin', '__init__.py')) as f:
    __version__ = re.search(r"^__version__ = '([^']+)'", f.read(),
                            re.M).group(1)

with open(osp.join(here, 'README.md')) as f:
    long_description = f.read()

install_requires = ['torch', 'torch-geometric>=2.5', 'scipy']
extras = {
    'ogb': ['ogb'],
    'bench': ['tqdm', 'matplotlib', 'pandas', 'scikit-learn', 'pillow'],
    'test': ['pytest', 'hypothesis'],
    # Approximate neighbours for gaussian_knn_graph(..., neighbors=) through
    # PyG's KNNIndex / ApproxL2KNNIndex (benchmarks/knn.py):
    'faiss': ['faiss-cpu'],
}
# Everything pip installs from wheels alone. The sparse accelerators are
# compiled against the installed torch, so they are opt-in (see the Makefile
# and the README): pip install --no-build-isolation '.[sparse]'
extras['full'] = sorted({pkg for pkgs in extras.values() for pkg in pkgs})
extras['sparse'] = ['torch-scatter', 'torch-sparse']

setup(
    name='torch-geometric-coin',
    version=__version__,
    description='Convection-Diffusion Networks (COIN) for PyTorch Geometric',
    long_description=long_description,
    long_description_content_type='text/markdown',
    license='MIT',
    python_requires='>=3.9',
    packages=find_packages(
        include=['torch_geometric_coin', 'torch_geometric_coin.*']),
    install_requires=install_requires,
    extras_require=extras,
)
