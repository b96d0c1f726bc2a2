"""mmext: OpenMMLab components (detection, segmentation, backbones, multimodal, recommendation).

Dependency ranges here are for people who bring their own environment; the tested pins live in
requirements/ and are installed by tools/setup_env.sh.
"""
import glob
import os
import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))
CSRC = osp.join('mmext', 'ops', 'csrc')


def run_file(*parts: str) -> dict:
    """Execute a stdlib-only module of the package without importing mmext (or torch)."""
    scope: dict = {}
    with open(osp.join(HERE, *parts)) as f:
        exec(f.read(), scope)
    return scope


def version() -> str:
    return run_file('mmext', 'version.py')['__version__']


def get_extensions() -> list:
    """``mmext._ext``, laid out and built the mmcv 2.x way.

    A C++ extension with the CPU kernels always; with the CUDA kernels too when torch sees a GPU
    or ``FORCE_CUDA=1`` (so a machine without a GPU still compiles, and CI checks, the CUDA
    sources).  ``MMEXT_WITH_OPS=0`` builds a pure-Python package.  torch 2.14's headers need
    C++20.  Without ``TORCH_CUDA_ARCH_LIST``, a GPU-less build targets sm_75+ (CUDA 13 dropped
    older architectures) with PTX for newer ones.
    """
    if os.getenv('MMEXT_WITH_OPS', '1') == '0':
        return []
    try:
        import torch
        from torch.utils.cpp_extension import CppExtension, CUDAExtension
    except ImportError:
        print('mmext: torch is not importable at build time, building without compiled ops '
              '(install torch first and use `pip install --no-build-isolation`)')
        return []
    sources = sorted(
        glob.glob(osp.join(CSRC, 'pytorch', '*.cpp')) +
        glob.glob(osp.join(CSRC, 'pytorch', 'cpu', '*.cpp')))
    run_file('mmext', 'ops', 'source_hash.py')['write_header'](osp.join(HERE, CSRC))
    define_macros = []
    # -fopenmp: at::parallel_for in our kernels runs on one thread without it (torch's own
    # libgomp is the runtime that gets loaded, so there is still a single OpenMP runtime).
    # -fno-math-errno: no kernel reads errno, and without it GCC keeps every square root scalar
    # (the AdagradM updates are a loop of them).  Results are unchanged.
    extra_compile_args = {'cxx': ['-std=c++20', '-O3', '-fopenmp', '-fno-math-errno']}
    extension = CppExtension
    if torch.cuda.is_available() or os.getenv('FORCE_CUDA', '0') == '1':
        extension = CUDAExtension
        sources += sorted(glob.glob(osp.join(CSRC, 'pytorch', 'cuda', '*.cu')))
        define_macros.append(('MMEXT_WITH_CUDA', None))
        # torch's flags disable the half/bfloat16 operators: kernels use the intrinsics.
        extra_compile_args['nvcc'] = ['-std=c++20', '-O3']
        if not torch.cuda.is_available():
            os.environ.setdefault('TORCH_CUDA_ARCH_LIST', '7.5;8.0;8.6;9.0+PTX')
    return [
        extension(
            name='mmext._ext',
            sources=sources,
            include_dirs=[osp.join(HERE, CSRC, 'common')],
            define_macros=define_macros,
            extra_compile_args=extra_compile_args,
            extra_link_args=['-fopenmp'])
    ]


def build_ext_cmdclass() -> dict:
    try:
        from torch.utils.cpp_extension import BuildExtension
    except ImportError:
        return {}
    return {'build_ext': BuildExtension}


MMCV = 'mmcv>=2.0.0rc4,<2.2.0'  # mmdet 3.3 and mmseg 1.2 assert mmcv < 2.2
EXTRAS = {
    # Vision parts, each with its toolbox: a missing one is named when a config builds its part.
    'det': [MMCV, 'mmdet>=3.0.0,<3.4.0', 'scipy', 'pycocotools', 'matplotlib'],
    # MaskFormer's panoptic fusion and mmseg's own MaskFormer use mmdet too.
    'seg': [MMCV, 'mmsegmentation>=1.0.0,<1.3.0', 'mmdet>=3.0.0,<3.4.0', 'scipy', 'ftfy', 'regex'],
    'pretrain': [MMCV, 'mmpretrain>=1.0.0,<1.3.0', 'scikit-learn'],
    'tests': ['pytest', 'pytest-timeout', 'hypothesis'],
}
EXTRAS['all'] = sorted({r for k in ('det', 'seg', 'pretrain') for r in EXTRAS[k]})

setup(
    name='mmext',
    version=version(),
    description='OpenMMLab plugin: FCOS, DETR, MaskFormer, Swin/ViT, ITC losses, '
    'sequential recommenders and fused ops for mmengine runners',
    long_description=open(osp.join(osp.dirname(__file__), 'README.md')).read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.9',
    packages=find_packages(include=['mmext', 'mmext.*']),
    include_package_data=True,
    # The lean core: recommenders, their data and metrics, the engine and the compiled ops.
    install_requires=['torch>=2.1', 'mmengine>=0.10.0,<1.0.0', 'numpy'],
    extras_require=EXTRAS,
    license='Apache License 2.0',
    ext_modules=get_extensions(),
    cmdclass=build_ext_cmdclass(),
    zip_safe=False,
)
